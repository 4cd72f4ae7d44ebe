#!/usr/bin/env bash
# scripts/fetch-clip.sh without the Hugging Face hub:
#  - no network (an unroutable address, a refused port, a name that does not
#    resolve as MMP_HF_ENDPOINT): one line "fetch-clip: cannot reach ...: no
#    network? nothing fetched", exit 2, nothing created;
#  - a fake hub on localhost (python3: the API's JSON with sha256 / git blob
#    ids, resolve/ with HTTP ranges): every file fetched and verified, from
#    the commit the API names; an interrupted download resumed with a Range
#    request; a bad checksum, a missing file, an unknown model: one line, exit
#    1, no DEST; a second run: "already there".
set -u
S="$MMP_ROOT/scripts/fetch-clip.sh"
fail() { echo "FAIL: $*"; exit 1; }
command -v curl > /dev/null || { echo "no curl"; exit 77; }
name=openai/clip-vit-base-patch32

for ep in http://192.0.2.1:9 http://127.0.0.1:1 http://no-such-host.invalid; do
  out=$(MMP_HF_ENDPOINT=$ep MMP_FETCH_TIMEOUT=3 bash "$S" $name "$PWD/m" 2>&1); rc=$?
  [ $rc = 2 ] || fail "$ep: exit $rc ($out)"
  [ "$(echo "$out" | wc -l)" = 1 ] || fail "$ep: not one line: $out"
  echo "$out" | grep -q "^fetch-clip: cannot reach $ep (curl [0-9]*: .*): no network? nothing fetched$" || fail "$ep: $out"
  [ -e m ] || [ -e m.part ] && fail "$ep: files created"
done
echo "no network: one line, exit 2"

py=${MMP_PYTHON:-/usr/bin/python3}
"$py" -c 'import http.server' 2> /dev/null || { echo "SKIP: no python3 for the fake hub"; exit 77; }
export PYTHON=$py
# the fake model: random weights, small json/txt files
mkdir -p hub/files
head -c 300000 /dev/urandom > hub/files/model.safetensors
for f in config.json preprocessor_config.json tokenizer_config.json special_tokens_map.json vocab.json; do
  echo "{\"file\": \"$f\"}" > hub/files/$f
done
printf '#version: 0.2\ni n\n' > hub/files/merges.txt
"$py" - hub <<'EOF'
import hashlib, json, os, sys
d = sys.argv[1]
sib = []
for f in sorted(os.listdir(os.path.join(d, "files"))):
    b = open(os.path.join(d, "files", f), "rb").read()
    s = {"rfilename": f, "size": len(b), "blobId": hashlib.sha1(b"blob %d\0" % len(b) + b).hexdigest()}
    if f.endswith(".safetensors"):
        s["lfs"] = {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b), "pointerSize": 134}
        s["blobId"] = "0" * 40  # the pointer's id, not the content's
    sib.append(s)
sib.append({"rfilename": "README.md", "size": 5, "blobId": "1" * 40})
good = {"id": "openai/clip-vit-base-patch32", "sha": "c0ffee" * 6 + "abcd", "siblings": sib}
json.dump(good, open(os.path.join(d, "good.json"), "w"))
bad = json.loads(json.dumps(good))
next(s for s in bad["siblings"] if s["rfilename"] == "config.json")["blobId"] = "2" * 40
json.dump(bad, open(os.path.join(d, "badsum.json"), "w"))
short = json.loads(json.dumps(good))
short["siblings"] = [s for s in short["siblings"] if s["rfilename"] != "merges.txt"]
json.dump(short, open(os.path.join(d, "nomerges.json"), "w"))
EOF
cat > hub/server.py <<'EOF'
import http.server, os, re, sys
d = sys.argv[1]


class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        with open(os.path.join(d, "log"), "a") as log:
            log.write(f"{path} {self.headers.get('Range', '-')}\n")
        api = open(os.path.join(d, "api")).read().strip()  # which answer the API gives
        m = re.fullmatch(r"/api/models/openai/clip-vit-base-patch32/revision/main", path)
        if m and api != "404":
            return self.send(open(os.path.join(d, api + ".json"), "rb").read(), "application/json")
        m = re.fullmatch(r"/openai/clip-vit-base-patch32/resolve/c0ffee[0-9a-f]+/([\w.]+)", path)
        if m and os.path.exists(os.path.join(d, "files", m.group(1))):
            b = open(os.path.join(d, "files", m.group(1)), "rb").read()
            r = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if r:
                start = int(r.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(b) - 1}/{len(b)}")
                self.send_header("Content-Length", str(len(b) - start))
                self.end_headers()
                self.wfile.write(b[start:])
                return
            return self.send(b, "application/octet-stream")
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send(self, b, ctype):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)


s = http.server.HTTPServer(("127.0.0.1", 0), H)
with open(os.path.join(d, "port.tmp"), "w") as f:
    f.write(str(s.server_address[1]))
os.rename(os.path.join(d, "port.tmp"), os.path.join(d, "port"))
s.serve_forever()
EOF
echo good > hub/api
"$py" hub/server.py "$PWD/hub" & srv=$!
trap 'kill $srv 2> /dev/null' EXIT
for _ in $(seq 100); do [ -f hub/port ] && break; sleep 0.1; done
[ -f hub/port ] || fail "fake hub did not start"
export MMP_HF_ENDPOINT="http://127.0.0.1:$(cat hub/port)"
files="model.safetensors config.json vocab.json merges.txt preprocessor_config.json tokenizer_config.json special_tokens_map.json"

# a whole fetch
out=$(bash "$S" $name "$PWD/m1" 2>&1) || fail "fetch: $out"
for f in $files; do cmp -s hub/files/$f m1/$f || fail "m1/$f differs"; done
[ "$(cat m1/REVISION)" = "$name@c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeeabcd" ] || fail "REVISION: $(cat m1/REVISION)"
[ -e m1.part ] && fail "m1.part left"
grep -q "^/openai/clip-vit-base-patch32/resolve/c0ffee[0-9a-f]*/model.safetensors -$" hub/log || fail "not fetched from the commit: $(cat hub/log)"
grep -q README hub/log && fail "fetched a file not asked for"
echo "$out" | grep -q "^$(sha256sum < hub/files/model.safetensors | cut -d' ' -f1)  .*m1/model.safetensors$" || fail "no sha256 line: $out"
out=$(bash "$S" $name "$PWD/m1" 2>&1) && echo "$out" | grep -q "^already there" || fail "second run: $out"

# resumed: an interrupted download left 100000 bytes
mkdir -p m2.part; head -c 100000 hub/files/model.safetensors > m2.part/model.safetensors
: > hub/log
out=$(bash "$S" $name "$PWD/m2" 2>&1) || fail "resume: $out"
echo "$out" | grep -q "^fetch-clip: resuming model.safetensors at 100000 of 300000 bytes$" || fail "resume message: $out"
grep -q "model.safetensors bytes=100000-$" hub/log || fail "no range request: $(cat hub/log)"
for f in $files; do cmp -s hub/files/$f m2/$f || fail "m2/$f differs"; done

# a corrupt partial file: fails the checksum, is removed, the next run fetches it whole
mkdir -p m3.part; head -c 100000 /dev/zero > m3.part/model.safetensors
out=$(bash "$S" $name "$PWD/m3" 2>&1); rc=$?
[ $rc = 1 ] && [ "$(echo "$out" | grep -vc resuming)" = 1 ] || fail "corrupt partial: exit $rc: $out"
echo "$out" | grep -q "^fetch-clip: model.safetensors: sha256 [0-9a-f]*, the hub says [0-9a-f]* (removed; run again)$" || fail "$out"
[ -e m3 ] || [ -e m3.part/model.safetensors ] && fail "m3 after a bad checksum"
bash "$S" $name "$PWD/m3" > /dev/null 2>&1 && cmp -s hub/files/model.safetensors m3/model.safetensors || fail "m3 rerun"

# errors from the hub: one line, exit 1, no DEST
check_err() { # api-answer expected
  echo "$1" > hub/api
  out=$(bash "$S" $name "$PWD/e" 2>&1); rc=$?
  [ $rc = 1 ] || fail "$1: exit $rc: $out"
  [ "$(echo "$out" | wc -l)" = 1 ] || fail "$1: not one line: $out"
  echo "$out" | grep -qF "$2" || fail "$1: $out (want $2)"
  [ -e e ] && fail "$1: DEST created"
  rm -rf e.part
}
check_err badsum "fetch-clip: config.json: blob "
check_err nomerges "fetch-clip: $name: the model has no merges.txt"
check_err 404 "fetch-clip: $name (revision main) not found at $MMP_HF_ENDPOINT (HTTP 404)"
out=$(bash "$S" clip-vit "$PWD/e" 2>&1) && fail "a name without owner accepted"
echo ok
