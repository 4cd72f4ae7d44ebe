#!/bin/sh
# gen-man.sh: a man page (roff, man macros) from a program's option table,
# the same table its --help is made from (see mmp_cli_dump in lib/cli.h):
#   MMP_CLI_DUMP=1 build/mmp-decode | sh scripts/gen-man.sh > mmp-decode.1
# NAME and DESCRIPTION come from the usage text (the lines after the "usage:"
# lines; NAME: their first sentence), SYNOPSIS from the "usage:" lines,
# OPTIONS from the option entries and the table's text entries.
# POSIX sh + awk (no build dependency). make man runs it for every program.
d=$(dirname "$0")
exec awk -F '\t' -f "$d/cli-table.awk" -f "$d/gen-man.awk"
