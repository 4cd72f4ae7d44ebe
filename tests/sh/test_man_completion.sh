#!/usr/bin/env bash
# make man / make completion: every built program gets a man page and bash and
# zsh completion generated from its option table (MMP_CLI_DUMP=1, scripts/gen-
# man.sh, scripts/gen-completion.sh). Checked against each program's --help:
# the page renders without warnings (man -l, else groff, else its roff
# structure) and lists every long option; bash completes every long option,
# "mmp-decode --si" to --size, the values of every choice option ("--NAME a|b"
# in --help) and file names for -o; zsh -n accepts the zsh files (when zsh is
# installed).
set -u
ROOT=${MMP_ROOT:?}; B=${MMP_BUILD:?}
. "$ROOT/tests/sh/checks.sh"
unset MAKEFLAGS MFLAGS MAKELEVEL
make -s -C "$ROOT" BUILD="$B" ${MMP_OPT:+OPT="$MMP_OPT"} EXTRA_CFLAGS="${MMP_EXTRA_CFLAGS:-}" CC="${MMP_CC:-cc}" \
  man completion > make.log 2>&1 || { cat make.log; fail "make man completion"; exit 1; }
if command -v man > /dev/null; then render=man; elif command -v groff > /dev/null; then render=groff; else render=; fi
echo "man pages rendered with: ${render:-nothing (roff structure only)}"
has_zsh=$(command -v zsh || true)
[ -n "$has_zsh" ] || echo "zsh not installed: the zsh files are not syntax-checked"

# the option lines of a program's --help ("  -j, --threads N   help", the help
# after two spaces or on the next line; not description lines beginning with "  --")
opt_lines() { "$1" --help | grep -E '^  (-[^ ,], )?--[a-z0-9][a-z0-9-]*( [^ ]+)?(  |$)'; }
long_opts() { opt_lines "$1" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^--[a-z0-9]/) { print $i; break } }'; }
# complete PROG WORD...: COMPREPLY for the last word, one per line
complete_words() {
  local prog=$1; shift
  bash -c '. "$1"; shift; fn=$(complete -p "$1" | sed -n "s/.*-F \([^ ]*\) .*/\1/p"); COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1));
           "$fn"; printf "%s\n" "${COMPREPLY[@]}"' _ "$B/completion/bash/$prog" "$prog" "$@"
}

n=0
for b in "$B"/mmp-*; do
  [ -x "$b" ] || continue
  p=$(basename "$b"); n=$((n + 1))
  opts=$(long_opts "$b")
  [ -n "$opts" ] || { fail "$p --help lists no long option"; continue; }
  # --- man page ---
  m="$B/man/$p.1"
  if [ ! -s "$m" ]; then fail "$p: no man page $m"; else
    for s in '^\.TH "'"$(echo "$p" | tr a-z A-Z)"'" 1 ' '^\.SH NAME$' '^\.SH SYNOPSIS$' '^\.SH OPTIONS$'; do
      grep -q "$s" "$m" || fail "$p.1: no line $s"
    done
    sed -n '/^\.SH NAME/{n;p;q}' "$m" | grep -q "^$(echo "$p" | sed 's/-/\\\\-/g') \\\\- ." || fail "$p.1: NAME line: $(sed -n '/^\.SH NAME/{n;p;q}' "$m")"
    for o in $opts; do grep -qF -- "\\fB$(echo "$o" | sed 's/-/\\-/g')\\fR" "$m" || fail "$p.1: option $o missing"; done
    case $render in
      man) LANG=C MANWIDTH=200 man --warnings -l "$m" > page.txt 2> warn.txt ;;
      groff) groff -man -Tascii -ww "$m" 2> warn.txt | col -b > page.txt ;;
      *) : > warn.txt; cp "$m" page.txt ;;
    esac
    if [ -n "$render" ]; then
      [ -s warn.txt ] && fail "$p.1: $render warns: $(head -3 warn.txt)"
      for s in NAME SYNOPSIS DESCRIPTION OPTIONS; do grep -qx "$s" page.txt || fail "$p.1 rendered: no $s section"; done
      for o in $opts; do grep -qE -- "(^|[ ,])$o( |,|$)" page.txt || fail "$p.1 rendered: option $o missing"; done
    fi
  fi
  # --- bash ---
  f="$B/completion/bash/$p"
  if [ ! -s "$f" ]; then fail "$p: no bash completion $f"; else
    bash -n "$f" 2> err.txt || fail "$p bash completion: $(cat err.txt)"
    all=$(complete_words "$p" --)
    for o in $opts; do grep -qx -- "$o" <<< "$all" || fail "$p: '--<TAB>' lacks $o"; done
    # every option with a choice of values ("  --NAME a|b|c  help" in --help)
    # completes them (in the table's order, which --help may not show)
    opt_lines "$b" | awk '{ for (i = 1; i < NF; i++) if ($i ~ /^--[a-z0-9]/ && $(i + 1) ~ /^[a-z0-9-]+(\|[a-z0-9-]+)+$/) print $i, $(i + 1) }' |
    while read -r o vals; do
      want=$(tr '|' '\n' <<< "$vals" | sort)
      got=$(complete_words "$p" "$o" "" | sort)
      [ "$got" = "$want" ] && echo "ok: $p $o <TAB>: $(echo $got)" || echo "FAIL: $p $o <TAB>: '$(echo $got)', want '$(echo $want)'"
      got=$(complete_words "$p" "$o" "${want%%$'\n'*}")
      [ "$got" = "${want%%$'\n'*}" ] || echo "FAIL: $p $o ${want%%$'\n'*}<TAB>: '$(echo $got)'"
    done > choices.txt
    cat choices.txt; fails=$((fails + $(grep -c '^FAIL' choices.txt)))
  fi
  # --- zsh ---
  z="$B/completion/zsh/_$p"
  if [ ! -s "$z" ]; then fail "$p: no zsh completion $z"; else
    head -1 "$z" | grep -qx "#compdef $p" || fail "_$p: first line $(head -1 "$z")"
    for o in $opts; do grep -q -- "'$o[=[]" "$z" || fail "_$p: option $o missing"; done
    [ -n "$has_zsh" ] && { zsh -n "$z" 2> err.txt || fail "_$p: zsh -n: $(cat err.txt)"; }
  fi
done
[ $n -gt 0 ] || fail "no program in $B"
ok "$n programs"

# --- the cases named in the issue ---
got=$(complete_words mmp-decode --si)
[ "$got" = --size ] && ok "mmp-decode --si<TAB> -> $got" || fail "mmp-decode --si<TAB>: '$got'"
got=$(complete_words mmp-embed --dtype "")
[ "$(echo $got)" = "f32 f16" ] && ok "mmp-embed --dtype <TAB> -> $(echo $got)" || fail "mmp-embed --dtype <TAB>: '$(echo $got)'"
got=$(complete_words mmp-embed --dtype = f1)   # --dtype=f1 as bash splits it
[ "$got" = f16 ] && ok "mmp-embed --dtype=f1<TAB> -> $got" || fail "mmp-embed --dtype=f1<TAB>: '$got'"
: > some-output.mmp
got=$(complete_words mmp-cat -o some-o)
[ "$got" = some-output.mmp ] && ok "mmp-cat -o some-o<TAB> -> $got" || fail "mmp-cat -o some-o<TAB>: '$got'"
got=$(complete_words mmp-cat --level "")
[ -z "$got" ] && ok "mmp-cat --level <TAB>: nothing (a number)" || fail "mmp-cat --level <TAB>: '$got'"
got=$(complete_words mmp-cat -- --he)
[ -z "$got" ] && ok "mmp-cat -- --he<TAB>: no option after --" || fail "mmp-cat -- --he<TAB>: '$got'"
[ $fails -eq 0 ] || exit 1
