# cli-table.awk: reading the option table a program prints with MMP_CLI_DUMP=1
# (tab-separated, see mmp_cli_dump in lib/cli.h); shared by gen-man.awk and
# gen-completion.awk (run them with awk -F '\t' -f cli-table.awk -f ...).

# a field with its escapes (\\, \t, \n) undone
function unesc(s,   r, i, c, n) {
    r = ""; n = length(s)
    for (i = 1; i <= n; i++) {
        c = substr(s, i, 1)
        if (c == "\\" && i < n) {
            c = substr(s, ++i, 1)
            r = r (c == "n" ? "\n" : c == "t" ? "\t" : c)
        } else r = r c
    }
    return r
}
