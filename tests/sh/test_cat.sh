#!/usr/bin/env bash
# mmp-cat: JSON lines, --count/--head/--header/--full, merging, re-encoding,
# concatenation through cat, quiet SIGPIPE, one-line errors with non-zero exit.
set -u
B=${MMP_BUILD:?}
GEN="$B/tests/test_stream"
[ -x "$GEN" ] && [ -x "$B/mmp-cat" ] || { echo "mmp-cat or test_stream not built"; exit 77; }
PY=${MMP_PYTHON:-}
fail=0
ok() { :; }
bad() { echo "FAIL: $*"; fail=1; }
# expect_error DESCRIPTION PATTERN cmd...: non-zero exit, exactly one stderr line
# "mmp-cat: ..." matching PATTERN, no crash (status < 128)
expect_error() {
  local what=$1 pat=$2; shift 2
  "$@" >/dev/null 2>err.txt; local st=$?
  local lines; lines=$(wc -l < err.txt)
  if [ $st -eq 0 ] || [ $st -ge 128 ]; then bad "$what: exit status $st"; fi
  if [ "$lines" -ne 1 ]; then bad "$what: $lines stderr lines:"; cat err.txt; fi
  if ! grep -q -- "$pat" err.txt; then bad "$what: stderr does not match '$pat':"; cat err.txt; fi
}

"$GEN" gen a.mmp 30 0 3 2
"$GEN" gen b.mmp 12 30 1 1

# JSON lines: header + one line per record, parseable
mmp-cat a.mmp > a.json || bad "mmp-cat a.mmp failed"
[ "$(wc -l < a.json)" -eq 31 ] || bad "expected 31 JSON lines, got $(wc -l < a.json)"
head -n 1 a.json | grep -q '^{"mmpipe":1,"schema":{"image":{"dtype":"u8","shape":\[-1,-1,3\]}' || bad "header line: $(head -n 1 a.json | cut -c1-120)"
sed -n 2p a.json | grep -q '^{"id":"item/00000.jpg","label":null,"text":null,"tensors":{"image":{"dtype":"u8","shape":\[1,2,3\],"min":' || bad "record line: $(sed -n 2p a.json | cut -c1-150)"
if [ -n "$PY" ]; then
  "$PY" - <<'EOF' || bad "JSON lines do not parse or values are wrong"
import json
lines = [json.loads(l) for l in open("a.json")]
assert lines[0]["classes"] == ["cat", "dog", "ship"], lines[0]
r = lines[2]
assert r["id"] == "item/00001.jpg" and r["label"] == 1 and r["class"] == "dog" and r["text"] == ""
t = r["tensors"]["half"]
assert t["dtype"] == "f16" and t["shape"] == [2, 3] and t["min"] == -2.5 and t["max"] == 2.5 and t["mean"] == 0
assert "data" not in t
EOF
fi
mmp-cat --full --head 2 a.mmp > full.json || bad "--full failed"
[ "$(wc -l < full.json)" -eq 3 ] || bad "--head 2 printed $(wc -l < full.json) lines"
grep -q '"half":{"dtype":"f16","shape":\[2,3\],"min":-2.5,"max":2.5,"mean":0,"data":\[\[-2.5,-1.5,-0.5\],\[0.5,1.5,2.5\]\]}' full.json || bad "--full values of the f16 tensor"
grep -q '"bh":{"dtype":"bf16","shape":\[5\],"min":0,"max":6,"mean":3,"data":\[0,1.5,3,4.5,6\]}' full.json || bad "--full values of the bf16 tensor"
[ "$(mmp-cat --head 0 a.mmp | wc -l)" -eq 1 ] || bad "--head 0 should print the header only"

# --count, --header, merge, stdin, concatenation through cat
[ "$(mmp-cat --count a.mmp)" = 30 ] || bad "--count a.mmp"
[ "$(mmp-cat --count a.mmp b.mmp)" = 42 ] || bad "--count a.mmp b.mmp"
[ "$(mmp-cat --count < b.mmp)" = 12 ] || bad "--count from stdin"
[ "$(mmp-cat --count a.mmp - < b.mmp)" = 42 ] || bad "--count a.mmp -"
[ "$(cat a.mmp b.mmp a.mmp | mmp-cat --count)" = 72 ] || bad "cat a b a | mmp-cat --count"
[ "$(mmp-cat --header a.mmp | wc -l)" -eq 1 ] || bad "--header prints one line"
mmp-cat --header a.mmp | grep -q '"meta":{"program":"test_stream"' || bad "--header meta"
[ "$(mmp-cat a.mmp b.mmp | wc -l)" -eq 43 ] || bad "merged JSON: one header, 42 records"

# re-encoding: same records, stamped header, skipped counts carried over
mmp-cat -o re.mmp --level 1 a.mmp b.mmp || bad "-o failed"
[ "$(mmp-cat --count re.mmp)" = 42 ] || bad "re-encoded count"
diff <(mmp-cat --full a.mmp b.mmp | tail -n +2) <(mmp-cat --full re.mmp | tail -n +2) >/dev/null || bad "re-encoded records differ"
mmp-cat --header re.mmp | grep -q '"history":"[^"]*mmp-cat -o re.mmp --level 1 a.mmp b.mmp' || bad "re-encoded header lacks the command in history: $(mmp-cat --header re.mmp)"
mmp-cat -o - --level 19 --head 5 a.mmp | mmp-cat --count | grep -qx 5 || bad "-o - | mmp-cat"
mmp-cat --level 1 a.mmp > l1.mmp && [ "$(mmp-cat --count l1.mmp)" = 30 ] || bad "--level alone writes a stream to stdout"
if [ -n "$PY" ]; then
  PYTHONPATH="$MMP_ROOT/formats/python" "$PY" -c "
import mmp_stream
with mmp_stream.Reader('re.mmp') as r:
    n = sum(1 for _ in r)
    assert n == 42 and r.skipped == 3, (n, r.skipped)
" || bad "skipped counts after merge"
fi
if command -v zstd >/dev/null; then
  zstd -dq < a.mmp > plain.msgpack || bad "zstd -d < a.mmp"
  [ -s plain.msgpack ] || bad "zstd -d output empty"
fi

# quiet SIGPIPE: a closed pipe ends mmp-cat without a message
"$GEN" gen big.mmp 3000 0 1
mmp-cat big.mmp 2>pipe_err.txt | head -n 2 > /dev/null
st=${PIPESTATUS[0]}
[ ! -s pipe_err.txt ] || { bad "mmp-cat | head printed on stderr:"; cat pipe_err.txt; }
[ "$st" -eq 0 ] || [ "$st" -eq 141 ] || bad "mmp-cat | head: status $st"
mmp-cat -o - big.mmp 2>pipe_err.txt | head -c 1000 > /dev/null
[ ! -s pipe_err.txt ] || { bad "mmp-cat -o - | head -c printed on stderr:"; cat pipe_err.txt; }

# errors: one line "mmp-cat: FILE: record N: what", non-zero exit
size=$(stat -c %s a.mmp)
head -c $((size - 1)) a.mmp > cut1.mmp
expect_error "truncated by 1 byte" "^mmp-cat: cut1.mmp: record 30: truncated stream" mmp-cat --count cut1.mmp
head -c $((size / 2)) a.mmp > half.mmp
expect_error "truncated in the middle" "^mmp-cat: half.mmp: record [0-9]*: truncated stream (no trailer) after [0-9]* records" mmp-cat half.mmp
for k in 1 3 4 7 20 100 400 $((size - 9)) $((size - 4)); do
  head -c $k a.mmp > cut.mmp
  expect_error "truncated at $k" "^mmp-cat: cut.mmp: " mmp-cat --count cut.mmp
done
: > empty.mmp
expect_error "empty input" "^mmp-cat: empty.mmp: header: empty input (not an mmp stream)" mmp-cat empty.mmp
echo "hello, world" > text.mmp
expect_error "not zstd" "^mmp-cat: text.mmp: header: not an mmp stream (bad zstd magic)" mmp-cat text.mmp
expect_error "not zstd on stdin" "^mmp-cat: stdin: header: not an mmp stream" mmp-cat --count < text.mmp
if command -v zstd >/dev/null; then
  echo '{"json": "not msgpack"}' | zstd -q > json.zst
  expect_error "zstd, not an mmp stream" "^mmp-cat: json.zst: header: not an mmp stream" mmp-cat json.zst
fi
expect_error "missing file" "^mmp-cat: nope.mmp: cannot open: No such file" mmp-cat nope.mmp
cp a.mmp flip.mmp
printf '\x55' | dd of=flip.mmp bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
# (zstd decodes ahead of the parser: a bad frame checksum can be found while
# reading the header, before a damaged record is handed out)
expect_error "flipped byte" "^mmp-cat: flip.mmp: \(header\|record [0-9]*\): corrupt stream (zstd frame at byte 0): " mmp-cat --count flip.mmp
cp a.mmp magic.mmp
printf 'X' | dd of=magic.mmp bs=1 seek=0 conv=notrunc 2>/dev/null
expect_error "wrong magic" "^mmp-cat: magic.mmp: header: not an mmp stream (bad zstd magic)" mmp-cat magic.mmp
cat a.mmp text.mmp > garbage_after.mmp
expect_error "garbage after a stream" "bad zstd magic at byte $size" mmp-cat --count garbage_after.mmp

# schema mismatch: as separate inputs and concatenated through cat
if [ -n "$PY" ]; then
  PYTHONPATH="$MMP_ROOT/formats/python" "$PY" -c "
import mmp_stream, numpy as np
with mmp_stream.Writer('other.mmp', {'emb': {'dtype': 'f16', 'shape': [16]}}) as w:
    w.write({'emb': np.zeros(16, np.float16)}, id='x')
" || bad "python writer"
  expect_error "merge mismatch" "^mmp-cat: other.mmp: header: schema mismatch with a.mmp: field 'image' missing" mmp-cat a.mmp other.mmp
  cat a.mmp other.mmp > mixed.mmp
  expect_error "cat mismatch" "^mmp-cat: mixed.mmp: record 30: schema mismatch at byte $size (stream 2): " mmp-cat --count mixed.mmp
  cat a.mmp other.mmp | mmp-cat --count >/dev/null 2>err.txt && bad "cat a other | mmp-cat should fail"
  grep -q "^mmp-cat: stdin: record 30: schema mismatch" err.txt || bad "piped mismatch message: $(cat err.txt)"
fi

# full disk
if [ -w /dev/full ]; then
  expect_error "disk full (-o)" "^mmp-cat: /dev/full: write error: No space left on device" mmp-cat -o /dev/full a.mmp
  mmp-cat a.mmp > /dev/full 2>err.txt && bad "JSON to /dev/full should fail"
  grep -q "^mmp-cat: stdout: write error" err.txt || bad "JSON to /dev/full: $(cat err.txt)"
fi
expect_error "unwritable output" "^mmp-cat: nodir/x.mmp: cannot open for writing" mmp-cat -o nodir/x.mmp a.mmp

# usage errors
expect_error "unknown option" "^mmp-cat: unknown option --bogus" mmp-cat --bogus a.mmp
expect_error "bad level" "^mmp-cat: value for --level out of range" mmp-cat --level 30 -o x.mmp a.mmp
expect_error "bad --head" "^mmp-cat: bad value for --head" mmp-cat --head x a.mmp
mmp-cat --help | grep -q '^usage: mmp-cat' || bad "--help"

exit $fail
