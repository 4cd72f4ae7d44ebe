#!/usr/bin/env bash
# make install into a temporary prefix: programs, their man pages and
# bash/zsh completion, libmmp.a, a versioned
# libmmp.so (soname), only the public headers, an mmp.pc that names exactly
# the libraries libmmp.so needs; then programs built against the installed
# library with pkg-config (shared and static) write and read a stream and a
# safetensors file, and every public header compiles on its own as C and C++.
set -u
ROOT=${MMP_ROOT:?}; B=${MMP_BUILD:?}
command -v pkg-config >/dev/null || { echo "pkg-config not installed"; exit 77; }
. "$ROOT/tests/sh/checks.sh"
P=$PWD/prefix
CC=${MMP_CC:-cc}
# The build's own flags (make test passes them; e.g. the ASan build's), so
# the installed library is the one this suite tests.
unset MAKEFLAGS MFLAGS MAKELEVEL
make -s -C "$ROOT" BUILD="$B" ${MMP_OPT:+OPT="$MMP_OPT"} EXTRA_CFLAGS="${MMP_EXTRA_CFLAGS:-}" CC="$CC" \
  PREFIX="$P" install > make.log 2>&1 || { cat make.log; fail "make install"; exit 1; }

# --- what is installed ---------------------------------------------------------
for b in "$B"/mmp-*; do [ -x "$P/bin/$(basename "$b")" ] || fail "bin/$(basename "$b") not installed"; done
# a man page, bash and zsh completion for every program (tests/sh/test_man_completion.sh checks their content)
for b in "$B"/mmp-*; do
  p=$(basename "$b")
  for f in share/man/man1/$p.1 share/bash-completion/completions/$p share/zsh/site-functions/_$p; do
    [ -s "$P/$f" ] || fail "$f not installed"
  done
done
[ -f "$P/lib/libmmp.a" ] || fail "libmmp.a not installed"
ver=$(sed -n 's/^#define MMP_VERSION "\(.*\)"/\1/p' "$ROOT/lib/mmp.h")
sov=$(sed -n 's/^#define MMP_SOVERSION \([0-9]*\)/\1/p' "$ROOT/lib/mmp.h")
[ -f "$P/lib/libmmp.so.$ver" ] || fail "libmmp.so.$ver not installed"
[ "$(readlink "$P/lib/libmmp.so.$sov")" = "libmmp.so.$ver" ] || fail "libmmp.so.$sov is not a link to libmmp.so.$ver"
[ "$(readlink "$P/lib/libmmp.so")" = "libmmp.so.$sov" ] || fail "libmmp.so is not a link to libmmp.so.$sov"
soname=$(readelf -d "$P/lib/libmmp.so.$ver" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libmmp.so.$sov" ] && ok "soname $soname" || fail "soname '$soname', want libmmp.so.$sov"
want=$(sed -n 's/^PUBLIC_HEADERS *:= *//p' "$ROOT/Makefile" | tr ' ' '\n' | sed 's|^lib/||' | sort)
have=$(cd "$P/include/mmp" && find . -type f | sed 's|^\./||' | sort)
[ "$want" = "$have" ] && ok "headers: $(echo $have)" || fail "installed headers differ from PUBLIC_HEADERS: $(echo $have)"
for h in $have; do grep -qi "internal header" "$P/include/mmp/$h" && fail "$h calls itself internal"; done

# --- mmp.pc names exactly what libmmp.so is linked with ------------------------
export PKG_CONFIG_PATH="$P/lib/pkgconfig"
[ "$(pkg-config --modversion mmp)" = "$ver" ] || fail "pkg-config --modversion mmp: $(pkg-config --modversion mmp 2>&1)"
needed=$(readelf -d "$P/lib/libmmp.so.$ver" | sed -n 's/.*(NEEDED).*\[lib\([^.]*\)\.so.*\]/\1/p' \
  | grep -vxE 'c|m|gcc_s|pthread|dl|ld-linux-x86-64|asan|ubsan|lsan|tsan' | sort -u)  # not the sanitizer runtimes of an ASan build
# each required package's own -l flags (not their private ones), plus Libs.private
listed=$( { for p in $(pkg-config --print-requires-private mmp | awk '{print $1}'); do pkg-config --libs-only-l "$p"; done
            sed -n 's/^Libs.private://p' "$P/lib/pkgconfig/mmp.pc"; } \
  | tr ' ' '\n' | sed -n 's/^-l//p' | grep -vxE 'm|pthread|dl' | sort -u)
[ "$needed" = "$listed" ] && ok "mmp.pc lists exactly: $(echo $listed)" \
  || fail "mmp.pc lists '$(echo $listed)' but libmmp.so needs '$(echo $needed)'"

# --- programs against the installed library ---------------------------------------
cat > use.c <<'C'
#include <string.h>
#include <mmp.h>
#include <image/image.h>
#include <nn/nn.h>
int main(int argc, char **argv) {
    char err[256];
    mmp_cli_init("use");
    mmp_header h; mmp_header_init(&h);
    int64_t shape[1] = {4};
    mmp_header_add_field(&h, "embedding", MMP_F32, 1, shape);
    mmp_writer *w = mmp_writer_open(argv[1], &h, 3);
    mmp_record r; mmp_record_init(&r);
    for (int i = 0; i < 5; i++) {
        mmp_record_clear(&r);
        float *x = mmp_record_add(&r, "embedding", MMP_F32, 1, shape)->data;
        for (int k = 0; k < 4; k++) x[k] = (float)(i * 4 + k);
        r.label = i % 2;
        mmp_writer_write(w, &r);
    }
    mmp_writer_close(w);
    mmp_reader *rd = mmp_reader_open(argv[1], err, sizeof err);
    if (!rd) { fprintf(stderr, "%s\n", err); return 1; }
    double sum = 0; int n;
    while ((n = mmp_reader_next(rd, &r)) == 1) sum += ((float *)mmp_record_get(&r, "embedding")->data)[3];
    if (n < 0) { fprintf(stderr, "%s\n", mmp_reader_error(rd)); return 1; }
    printf("records %llu sum %g\n", (unsigned long long)mmp_reader_count(rd), sum);
    mmp_reader_close(rd);
    mmp_st_writer sw; mmp_st_writer_init(&sw);
    float wts[6] = {1, 2, 3, 4, 5, 6}; int64_t s2[2] = {2, 3};
    mmp_st_writer_add_f32(&sw, "fc.weight", wts, 2, s2);
    if (mmp_st_writer_write(&sw, argv[2], err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    mmp_st_writer_free(&sw);
    mmp_safetensors st;
    if (mmp_st_open(&st, argv[2], err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    printf("tensor %s [%lld,%lld]\n", st.entries[0].name, (long long)st.entries[0].t.shape[0], (long long)st.entries[0].t.shape[1]);
    mmp_st_close(&st);
    mmp_record_clear(&r); mmp_header_free(&h);
    printf("image sniff %d\n", (int)mmp_img_sniff("\x89PNG\r\n\x1a\n", 8));
    return 0;
}
C
expect="records 5 sum 55
tensor fc.weight [2,3]
image sniff $(grep -n 'MMP_IMGFMT_UNKNOWN = 0, MMP_IMGFMT_JPEG, MMP_IMGFMT_PNG' "$ROOT/lib/image/image.h" >/dev/null && echo 2)"
# ${MMP_EXTRA_CFLAGS} links the sanitizer runtime when the library was built with one
if $CC ${MMP_EXTRA_CFLAGS:-} -o use-shared use.c $(pkg-config --cflags --libs mmp) -Wl,-rpath,"$P/lib" 2> cc.log; then
  readelf -d use-shared | grep -q "NEEDED.*\[libmmp.so.$sov\]" || fail "use-shared does not need libmmp.so.$sov"
  out=$(./use-shared s.mmp s.safetensors 2>&1) && [ "$out" = "$expect" ] && ok "shared: $(echo $out)" || fail "shared program: $out"
  "$P/bin/mmp-cat" --count s.mmp > count.txt 2>&1 && grep -qx 5 count.txt || fail "installed mmp-cat --count: $(cat count.txt)"
else cat cc.log; fail "building against libmmp.so with pkg-config"; fi
if $CC ${MMP_EXTRA_CFLAGS:-} -static-libgcc -o use-static use.c $(pkg-config --cflags mmp) "$P/lib/libmmp.a" $(pkg-config --static --libs mmp | sed 's/-lmmp//') 2> cc.log; then
  readelf -d use-static | grep -q "libmmp.so" && fail "use-static needs libmmp.so"
  out=$(./use-static t.mmp t.safetensors 2>&1) && [ "$out" = "$expect" ] && ok "static: $(echo $out)" || fail "static program: $out"
else cat cc.log; fail "building against libmmp.a with pkg-config --static"; fi

# --- every public header on its own, as C and as C++ --------------------------------
for h in $have; do
  printf '#include <%s>\nint main(void) { return 0; }\n' "$h" > one.c
  $CC -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags mmp) -c one.c -o one.o 2> cc.log || { cat cc.log; fail "$h alone (C)"; }
  if command -v c++ >/dev/null; then
    cp one.c one.cc
    c++ -Wall -Wextra -Werror $(pkg-config --cflags mmp) -c one.cc -o one.o 2> cc.log || { cat cc.log; fail "$h alone (C++)"; }
  fi
done
[ $fails -eq 0 ] || exit 1
