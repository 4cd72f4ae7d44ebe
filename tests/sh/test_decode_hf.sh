#!/usr/bin/env bash
# mmp-decode on Hugging Face imagefolder layouts (metadata.jsonl / metadata.csv
# with file_name, split folders, --split) and manifest errors that name the
# manifest file and line. tests/py/test_decode_hf_datasets.py compares the same kind of
# folders with datasets.load_dataset when the package is there.
set -u
command -v mmp-decode >/dev/null || { echo "no mmp-decode on PATH"; exit 77; }
command -v mmp-cat >/dev/null || { echo "no mmp-cat on PATH"; exit 77; }
fx="$MMP_ROOT/tests/fixtures/image"
[ -f "$fx/base420.jpg" ] || { echo "no fixtures"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
# records as "id label class text" lines
recs() { mmp-decode "$@" 2>/dev/null | mmp-cat | tail -n +2 |
  sed -E 's/^\{"id":"([^"]*)","label":([^,]*),("class":"([^"]*)",)?"text":("([^"]*)"|null).*/\1 \2 \4 \6/'; }
classes() { mmp-decode "$@" 2>/dev/null | mmp-cat --header | sed -E 's/.*"classes":\[([^]]*)\].*/\1/'; }
# the one line of stderr of a command that must fail
fails() { local e; e=$(mmp-decode "$@" -o /dev/null 2>&1) && fail "accepted: $*"; [ "$(printf '%s\n' "$e" | wc -l)" = 1 ] || fail "not one line: $e"; printf '%s' "$e"; }

# metadata.jsonl: file_name in a sub-folder, the rows' order, string labels,
# text, an extra column (ignored); an image without a row is left out
mkdir -p j/images
cp "$fx/base420.jpg" j/images/a.jpg; cp "$fx/rgb.png" j/images/b.png; cp "$fx/prog.jpg" j/c.jpg; cp "$fx/gray.jpg" j/unlisted.jpg
cat > j/metadata.jsonl <<'X'
{"file_name": "images/b.png", "label": "dog", "text": "a dog", "n": 1}
{"file_name": "images/a.jpg", "label": "cat", "caption": "a cat", "n": 2}

{"file_name": "./c.jpg", "label": "cat", "n": 3}
X
got=$(recs j)
want='j/images/b.png 1 dog a dog
j/images/a.jpg 0 cat a cat
j/c.jpg 0 cat '
[ "$got" = "$want" ] || fail "metadata.jsonl: $got"
[ "$(classes j)" = '"cat","dog"' ] || fail "metadata.jsonl classes: $(classes j)"
mmp-decode j --split train -o /dev/null 2>/dev/null || fail "--split train on a folder without split folders"
e=$(fails j --split test); [ "$e" = "mmp-decode: j: no split 'test' (found: train)" ] || fail "no split test: $e"

# metadata.csv with a UTF-8 byte order mark, RFC 4180 quoting (comma and a
# newline inside a field), integer labels
mkdir -p c/x
cp "$fx/base420.jpg" c/x/1.jpg; cp "$fx/rgb.png" c/x/2.png
printf '\xef\xbb\xbffile_name,label,text\nx/2.png,3,"two, with a comma"\n"x/1.jpg",0,"line\none"\n' > c/metadata.csv
got=$(recs c | head -1)
[ "$got" = "c/x/2.png 3  two, with a comma" ] || fail "metadata.csv: $got"
[ "$(mmp-decode c 2>/dev/null | mmp-cat | tail -n +2 | sed -n 2p | grep -c '"text":"line\\none"')" = 1 ] || fail "quoted newline"
# the same BOM on a plain manifest and a JSONL one
printf '\xef\xbb\xbfpath,label\nc/x/1.jpg,7\n' > bom.csv
[ "$(recs bom.csv)" = "c/x/1.jpg 7  " ] || fail "BOM csv: $(recs bom.csv)"
printf '\xef\xbb\xbf{"path": "c/x/1.jpg", "label": 2}\n' > bom.jsonl
[ "$(recs bom.jsonl)" = "c/x/1.jpg 2  " ] || fail "BOM jsonl: $(recs bom.jsonl)"

# split folders with class folders: label = the class folder (classes over
# all splits, as datasets), one split at a time
for sp in train valid test; do mkdir -p s/$sp/cat s/$sp/dog; cp "$fx/base420.jpg" s/$sp/cat/1.jpg; cp "$fx/rgb.png" s/$sp/dog/2.png; done
mkdir -p s/test/bird; cp "$fx/prog.jpg" s/test/bird/3.jpg
e=$(fails s); [ "$e" = "mmp-decode: s: splits train, validation, test (Hugging Face imagefolder layout): choose with --split NAME (or A+B)" ] || fail "no --split: $e"
[ "$(classes s --split train)" = '"bird","cat","dog"' ] || fail "split classes: $(classes s --split train)"
[ "$(recs s --split validation)" = "s/valid/cat/1.jpg 1 cat 
s/valid/dog/2.png 2 dog " ] || fail "--split validation: $(recs s --split validation)"
[ "$(recs s --split train+test | wc -l)" = 5 ] || fail "--split train+test"
e=$(fails s --split val); [ "$e" = "mmp-decode: s: no split 'val' (found: train, validation, test)" ] || fail "--split val: $e"

# datasets decides labels split by split on the folder names seen so far: a
# train split with one class folder has none when test brings a second
mkdir -p late/train/cat late/test/cat late/test/dog
cp "$fx/base420.jpg" late/train/cat/0.jpg; cp "$fx/rgb.png" late/test/cat/1.png; cp "$fx/prog.jpg" late/test/dog/2.jpg
[ "$(recs late --split train)" = "late/train/cat/0.jpg null  " ] || fail "late labels, train: $(recs late --split train)"
[ "$(recs late --split test | tail -1)" = "late/test/dog/2.jpg 1 dog " ] || fail "late labels, test: $(recs late --split test)"

# split folders with a metadata file each
for sp in train test; do mkdir -p m/$sp; cp "$fx/base420.jpg" m/$sp/0.jpg; cp "$fx/rgb.png" m/$sp/1.png
  printf '{"file_name": "1.png", "label": 1, "text": "one %s"}\n{"file_name": "0.jpg", "label": 0, "text": "zero %s"}\n' $sp $sp > m/$sp/metadata.jsonl; done
[ "$(recs m --split test)" = "m/test/1.png 1  one test
m/test/0.jpg 0  zero test" ] || fail "split metadata: $(recs m --split test)"

# a torchvision ImageFolder (class folders, no split folder) is all "train";
# --split needs a folder; a trailing slash makes no "//" in the ids
mkdir -p tv/a tv/b; cp "$fx/base420.jpg" tv/a/1.jpg; cp "$fx/rgb.png" tv/b/2.png
[ "$(recs tv/ --split train)" = "tv/a/1.jpg 0 a 
tv/b/2.png 1 b " ] || fail "ImageFolder --split train: $(recs tv/ --split train)"
e=$(fails tv --split test); [ "$e" = "mmp-decode: tv: no split 'test' (found: train; a folder without split folders is all train)" ] || fail "ImageFolder --split test: $e"
e=$(fails bom.csv --split train); [ "$e" = "mmp-decode: --split train: no folder among the inputs (it picks a split of a Hugging Face imagefolder)" ] || fail "--split on a manifest: $e"

# errors: one line naming the manifest file and its line
mkdir -p bad
cp "$fx/base420.jpg" bad/a.jpg
printf '{"file_name": "a.jpg", "label": "cat"}\n{"file_name": "a.jpg", "label": 1}\n' > bad/metadata.jsonl
e=$(fails bad); [ "$e" = "mmp-decode: bad/metadata.jsonl: line 2: label 1 is a number here but a string (a class name) on line 1" ] || fail "mixed labels: $e"
printf '{"file_name": "a.jpg"}\n\n{"file_name": "a.jpg", "label": }\n' > bad/metadata.jsonl
e=$(fails bad); case "$e" in "mmp-decode: bad/metadata.jsonl: line 3, column "*) ;; *) fail "bad JSON: $e" ;; esac
printf '{"file_name": "../a.jpg"}\n' > bad/metadata.jsonl
e=$(fails bad); [ "$e" = "mmp-decode: bad/metadata.jsonl: line 1: file_name '../a.jpg' must be a relative path inside the folder of the metadata file" ] || fail "traversal: $e"
rm bad/metadata.jsonl
printf 'path,label\na.jpg,x\n' > bad/metadata.csv
e=$(fails bad); [ "$e" = "mmp-decode: bad/metadata.csv: line 1: CSV header has no file_name column (Hugging Face imagefolder metadata)" ] || fail "no file_name: $e"
printf 'file_name,text\na.jpg,ok\na.jpg,"open\n\n' > bad/metadata.csv
e=$(fails bad); [ "$e" = "mmp-decode: bad/metadata.csv: line 3: unterminated quoted field" ] || fail "unterminated: $e"
printf 'file_name,text\n"a.jpg","two\nlines"\n,x\n' > bad/metadata.csv
e=$(fails bad); [ "$e" = "mmp-decode: bad/metadata.csv: line 4: missing file_name" ] || fail "line after a quoted newline: $e"
# plain manifests: a number after a class name, a number beyond the class list
printf '{"path": "bad/a.jpg", "label": 1}\n{"path": "bad/a.jpg", "label": "cat"}\n' > mixed.jsonl
e=$(fails mixed.jsonl); [ "$e" = "mmp-decode: mixed.jsonl: line 2: label 'cat' is a string (a class name) here but a number on line 1" ] || fail "mixed manifest: $e"
printf 'path,label\nbad/a.jpg,5\n' > num.csv
e=$(fails num.csv --classes a,b); [ "$e" = "mmp-decode: num.csv: line 2: label 5 out of range (2 classes in the class list)" ] || fail "out of range: $e"
printf 'path,label\nbad/a.jpg,-2\n' > neg.csv
e=$(fails neg.csv); [ "$e" = "mmp-decode: neg.csv: line 2: label -2 is negative (labels are >= 0; -1 = none)" ] || fail "negative: $e"
echo ok
