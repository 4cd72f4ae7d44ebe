# Sourced by shell tests (not a test itself): counted failures and the
# bad-input check of the training tests.
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
# bad WHAT EXPECTED-SUBSTRING CMD...: CMD must fail with exactly one stderr
# line "mmp-...: ...EXPECTED-SUBSTRING..." and leave no bad.safetensors.
bad() {
  local what=$1 want=$2; shift 2
  rm -f bad.safetensors
  if "$@" > /dev/null 2> err.txt; then fail "$what: succeeded"; return; fi
  if [ "$(wc -l < err.txt)" -ne 1 ] || ! grep -q "^mmp-[a-z-]*: .*$want" err.txt; then fail "$what: stderr: $(cat err.txt)"; return; fi
  [ -e bad.safetensors ] && { fail "$what: left a checkpoint"; return; }
  ok "$what: $(cat err.txt)"
}
# refuse WANT CMD...: CMD must fail with exactly one stderr line containing
# the fixed string WANT; else fail (the caller's fail: counted, or exiting).
refuse() {
  local want=$1; shift
  if "$@" > out.tmp 2> err.txt; then fail "accepted: $*"; return; fi
  [ "$(wc -l < err.txt)" -eq 1 ] || { cat err.txt; fail "not one line: $*"; return; }
  grep -qF -- "$want" err.txt || { cat err.txt; fail "message of: $*"; return; }
}
