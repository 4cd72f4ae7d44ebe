# gen-completion.awk: see gen-completion.sh (run with cli-table.awk)
# the kind of value an option takes: "" none, "choice", "file", "number"
function kind(type, vn) {
    if (vn == "") return ""
    if (type == "choice") return "choice"
    if (type ~ /^(int|llong|int64|double|intlist)$/) return "number"
    return "file"
}
function sq(s) { gsub(/\047/, "\047\\\047\047", s); return s } # inside single quotes
$1 == "program" { prog = unesc($2); next }
$1 == "option" {
    n++
    long[n] = unesc($2); short[n] = unesc($3); k[n] = kind($4, unesc($5))
    vn[n] = unesc($5); ch[n] = unesc($6); help[n] = unesc($7)
    if (ch[n] == "" && k[n] != "" && vn[n] ~ /^[a-z0-9][a-z0-9._-]*(\|[a-z0-9][a-z0-9._-]*)+$/) { ch[n] = vn[n]; k[n] = "choice" }
}
END {
    if (prog == "") { print "gen-completion.sh: no program line in the input (not an MMP_CLI_DUMP=1 dump?)" > "/dev/stderr"; exit 1 }
    if (shell == "bash") bash(); else zsh()
}
function names(i,   s) {
    s = ""
    if (long[i] != "") s = "--" long[i]
    if (short[i] != "") s = s (s == "" ? "" : "|") "-" short[i]
    return s
}
function bash(   fn, i, words, files, nums) {
    fn = prog; gsub(/[^A-Za-z0-9_]/, "_", fn); fn = "_" fn
    words = ""; files = ""; nums = ""
    for (i = 1; i <= n; i++) {
        if (long[i] != "") words = words (words == "" ? "" : " ") "--" long[i]
        if (short[i] != "") words = words (words == "" ? "" : " ") "-" short[i]
        if (k[i] == "file") files = files (files == "" ? "" : "|") names(i)
        if (k[i] == "number") nums = nums (nums == "" ? "" : "|") names(i)
    }
    print "# bash completion for " prog ", generated from its option table by scripts/gen-completion.sh"
    print fn "() {"
    print "    local cur=${COMP_WORDS[COMP_CWORD]} prev= opt= pre= i"
    print "    [ \"$COMP_CWORD\" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD-1]}"
    print "    # after \"--\": arguments only"
    print "    for ((i = 1; i < COMP_CWORD; i++)); do"
    print "        [ \"${COMP_WORDS[i]}\" = -- ] && { COMPREPLY=($(compgen -f -- \"$cur\")); return 0; }"
    print "    done"
    print "    # the option whose value this is: \"--opt VALUE\", \"--opt=VALUE\" (one word, or"
    print "    # three when = breaks words, as in the default COMP_WORDBREAKS)"
    print "    if [ \"$cur\" = = ]; then opt=$prev; cur="
    print "    elif [ \"$prev\" = = ] && [ \"$COMP_CWORD\" -gt 1 ]; then opt=${COMP_WORDS[COMP_CWORD-2]}"
    print "    elif [[ $cur == --*=* ]]; then opt=${cur%%=*}; pre=$opt=; cur=${cur#*=}"
    print "    else opt=$prev; fi"
    print "    case $opt in"
    for (i = 1; i <= n; i++)
        if (k[i] == "choice") {
            w = ch[i]; gsub(/\|/, " ", w)
            print "        " names(i) ") COMPREPLY=($(compgen -P \"$pre\" -W \047" sq(w) "\047 -- \"$cur\")); return 0 ;;"
        }
    if (files != "") print "        " files ") COMPREPLY=($(compgen -P \"$pre\" -f -- \"$cur\")); return 0 ;;"
    if (nums != "") print "        " nums ") COMPREPLY=(); return 0 ;;"
    print "    esac"
    print "    [ -n \"$pre\" ] && { COMPREPLY=(); return 0; }"
    print "    case $cur in"
    print "        -*) COMPREPLY=($(compgen -W \047" sq(words) "\047 -- \"$cur\")) ;;"
    print "        *) COMPREPLY=($(compgen -f -- \"$cur\")) ;;"
    print "    esac"
    print "    return 0"
    print "}"
    print "complete -o filenames -F " fn " " prog
}
# zsh: an _arguments spec per name
function zdesc(s) {
    sub(/\n.*/, "", s)            # the first line of the help
    gsub(/\\/, "\\\\", s); gsub(/\[/, "\\[", s); gsub(/\]/, "\\]", s); gsub(/:/, "\\:", s)
    return sq(s)
}
function zaction(i,   w) {
    if (k[i] == "choice") { w = ch[i]; gsub(/\|/, " ", w); return ":" zmsg(vn[i]) ":(" sq(w) ")" }
    if (k[i] == "file") return ":" zmsg(vn[i]) ":_files"
    if (k[i] == "number") return ":" zmsg(vn[i]) ": "
    return ""
}
function zmsg(s) { gsub(/[:\\]/, "_", s); return sq(s) }
function zsh(   i, d, a) {
    print "#compdef " prog
    print "# zsh completion for " prog ", generated from its option table by scripts/gen-completion.sh"
    print "_arguments -s -S \\"
    for (i = 1; i <= n; i++) {
        d = zdesc(help[i]); a = zaction(i)
        if (long[i] != "") print "  \047--" long[i] (a != "" ? "=" : "") "[" d "]" a "\047 \\"
        if (short[i] != "") print "  \047-" short[i] (a != "" ? "+" : "") "[" d "]" a "\047 \\"
    }
    print "  \047*:file:_files\047"
}
