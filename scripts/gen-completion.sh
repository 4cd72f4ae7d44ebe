#!/bin/sh
# gen-completion.sh: shell completion for one program from its option table
# (see mmp_cli_dump in lib/cli.h), the table its --help is made from:
#   MMP_CLI_DUMP=1 build/mmp-decode | sh scripts/gen-completion.sh bash > mmp-decode
#   MMP_CLI_DUMP=1 build/mmp-decode | sh scripts/gen-completion.sh zsh  > _mmp-decode
# Completes the long and short option names, the values of choice options
# (and of options whose value name lists them: "linear|mlp|pair"), file names
# for the values of other string options and for the arguments; numbers get
# no completion. POSIX sh + awk (no build dependency); make completion
# runs it for every program.
case ${1:-} in bash|zsh) ;; *) echo "usage: gen-completion.sh bash|zsh < DUMP" >&2; exit 2 ;; esac
d=$(dirname "$0")
exec awk -F '\t' -v shell="$1" -f "$d/cli-table.awk" -f "$d/gen-completion.awk"
