# Shared helpers for the pipelines/ scripts (sourced).
here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
MMP_ROOT=${MMP_ROOT:-$(dirname "$here")}
[ -d "$MMP_ROOT/build" ] && PATH="$MMP_ROOT/build:$PATH"
prog=$(basename "${BASH_SOURCE[1]}")
die() { echo "$prog: $*" >&2; exit 1; }
say() { echo "$prog: $*" >&2; }
need_file() { [ -f "$1" ] || [ "$1" = - ] || die "$1: no such file"; }
need_bins() { for b in "$@"; do command -v "$b" >/dev/null || die "$b not found (run make, or put mmpipe's bin folder on PATH)"; done; }
usage_from_header() { sed -n '2,/^$/p' "${BASH_SOURCE[1]}" | sed 's/^# \{0,1\}//'; }
# timed NAME CMD...: runs CMD (a shell string), records its wall time in $timings
timings=""
timed() { local name=$1; shift; local t0=$(date +%s%N); bash -o pipefail -c "$*" || die "stage '$name' failed"; local t1=$(date +%s%N)
  local s=$(( (t1 - t0) / 1000000 )); timings+=$(printf '%-28s %8d.%03d s\\n' "$name" $((s / 1000)) $((s % 1000))); }
print_timings() { printf "\nwall time per stage:\n$timings"; }
