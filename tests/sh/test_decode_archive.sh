#!/usr/bin/env bash
# mmp-decode on compressed tars and zips (libarchive): the same mmp-synth data
# as a WebDataset tar and as an ImageFolder tar, written by python3 (tarfile,
# gzip, lzma, bz2, zipfile) and the zstd CLI; each must give the same stream,
# byte for byte, as the plain tar (all read as '-', so the header's args
# match), from a file and from a pipe; truncated / corrupt archives give one
# line naming the archive and a non-zero exit.
set -u
command -v mmp-decode >/dev/null || { echo "no mmp-decode on PATH"; exit 77; }
command -v mmp-synth >/dev/null || { echo "no mmp-synth on PATH"; exit 77; }
command -v python3 >/dev/null || { echo "no python3"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
mmp-synth -n 12 --no-progress -o wds.tar || fail "mmp-synth"
mmp-synth --classes > classes.txt
python3 - <<'PY' || fail "python3 could not write the archives"
import bz2, gzip, lzma, tarfile, zipfile
with tarfile.open("wds.tar") as t, tarfile.open("folder.tar", "w", format=tarfile.PAX_FORMAT) as o:
    for m in t.getmembers():
        if m.name.endswith(".jpg"):
            cls = t.extractfile(m.name[:-4] + ".cls").read().decode().strip()
            # one non-ASCII name (pax UTF-8 path; zip's UTF-8 flag)
            n = tarfile.TarInfo(f"class{cls}/{'été-' if m.name.endswith('00.jpg') else ''}{m.name}")
            n.size = m.size
            o.addfile(n, t.extractfile(m))
for s in ("wds", "folder"):
    data = open(s + ".tar", "rb").read()
    open(s + ".tar.gz", "wb").write(gzip.compress(data))
    open(s + ".tgz", "wb").write(gzip.compress(data[:len(data) // 2]) + gzip.compress(data[len(data) // 2:]))
    open(s + ".tar.xz", "wb").write(lzma.compress(data))
    open(s + ".tar.bz2", "wb").write(bz2.compress(data))
    with tarfile.open(s + ".tar") as t, zipfile.ZipFile(s + ".zip", "w", zipfile.ZIP_DEFLATED) as z:
        for m in t.getmembers():
            if m.isfile():
                z.writestr(m.name, t.extractfile(m).read())
    # corrupt copies: a flipped byte inside the compressed data, and a cut
    for ext in ("tar.gz", "zip"):
        d = bytearray(open(f"{s}.{ext}", "rb").read())
        d[len(d) // 2] ^= 0x5a
        open(f"bad-{s}.{ext}", "wb").write(d)
        open(f"cut-{s}.{ext}", "wb").write(d[: len(d) * 2 // 3])
PY
exts="tar.gz tgz tar.xz tar.bz2 zip"
if command -v zstd >/dev/null; then
  for s in wds folder; do zstd -q -f "$s.tar" -o "$s.tar.zst" || fail "zstd"; done
  exts="$exts tar.zst"
fi
for s in wds folder; do
  mmp-decode --size 16 - < "$s.tar" > "$s.ref" 2>/dev/null || fail "plain $s.tar"
  mmp-decode --size 16 --classes-from classes.txt - < "$s.tar" > "$s.refc" 2>/dev/null || fail "plain $s.tar --classes-from"
  cat "$s.tar" | mmp-decode --size 16 --classes-from classes.txt - > "$s.refp" 2>/dev/null || fail "plain $s.tar piped"
  [ "$(mmp-cat "$s.ref" | tail -n +2 | wc -l)" = 12 ] || fail "$s.tar: expected 12 records"
  [ $s = wds ] || mmp-cat "$s.ref" | grep -q '"id":"class[0-9]/été-item000000.jpg"' || fail "$s.tar: no non-ASCII id"
  for x in $exts; do
    mmp-decode --size 16 - < "$s.$x" > out 2>err || fail "$s.$x: $(cat err)"
    cmp -s out "$s.ref" || fail "$s.$x (file) differs from $s.tar"
    cat "$s.$x" | mmp-decode --size 16 - > out 2>err || fail "$s.$x piped: $(cat err)"
    cmp -s out "$s.ref" || fail "$s.$x (pipe, spooled) differs from $s.tar"
    mmp-decode --size 16 --classes-from classes.txt - < "$s.$x" > out 2>/dev/null || fail "$s.$x --classes-from"
    cmp -s out "$s.refc" || fail "$s.$x (file, --classes-from) differs from $s.tar"
    cat "$s.$x" | mmp-decode --size 16 --classes-from classes.txt - > out 2>/dev/null || fail "$s.$x piped --classes-from"
    cmp -s out "$s.refp" || fail "$s.$x (pipe, one pass) differs from $s.tar"
  done
  # by name: same records as the plain tar (the header's args name the file)
  mmp-decode --size 16 "$s.tar.gz" > out 2>/dev/null || fail "$s.tar.gz by name"
  diff <(mmp-cat out | tail -n +2) <(mmp-cat "$s.ref" | tail -n +2) >/dev/null || fail "$s.tar.gz by name: records differ"
  # corrupt and truncated: one line naming the archive, non-zero exit, from a file and a pipe
  for f in bad-$s.tar.gz cut-$s.tar.gz bad-$s.zip cut-$s.zip; do
    mmp-decode "$f" > out 2>err && fail "$f accepted"
    grep -v ': warning: ' err > err1
    [ "$(wc -l < err1)" = 1 ] || fail "$f: expected one error line, got: $(cat err)"
    grep -q "^mmp-decode: $f: " err1 || fail "$f: error does not name the archive: $(cat err1)"
    cat "$f" | mmp-decode --classes-from classes.txt - > out 2>err && fail "$f piped accepted"
    grep -v ': warning: ' err > err1
    [ "$(wc -l < err1)" = 1 ] || fail "$f piped: expected one error line, got: $(cat err)"
    grep -q "^mmp-decode: -: " err1 || fail "$f piped: error does not name the input: $(cat err1)"
  done
done
# a gzip whose CRC-32 is wrong (data intact elsewhere) is refused
python3 -c "
d = bytearray(open('wds.tar.gz', 'rb').read()); d[-8] ^= 1; open('crc.tar.gz', 'wb').write(d)"
err=$(mmp-decode crc.tar.gz 2>&1 >/dev/null) && fail "bad gzip CRC accepted"
echo "$err" | grep -q "^mmp-decode: crc.tar.gz: .*incorrect data check" || fail "gzip CRC message: $err"
echo ok
