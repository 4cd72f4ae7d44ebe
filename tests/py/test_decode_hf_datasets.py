"""mmp-decode on Hugging Face imagefolder layouts against datasets itself:
load_dataset("imagefolder", data_dir=...) and mmp-decode (through mmp-cat)
must give the same files in the same order, the same labels and class names
and the same text, split by split. Skips (77) without the `datasets` package."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import datasets
except ImportError:
    print("SKIP: no python package datasets")
    sys.exit(77)

ROOT = os.environ.get("MMP_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
DECODE, CAT = os.path.join(BUILD, "mmp-decode"), os.path.join(BUILD, "mmp-cat")
FX = os.path.join(ROOT, "tests", "fixtures", "image")
for exe in (DECODE, CAT):
    if not os.access(exe, os.X_OK):
        print("SKIP: %s not built" % exe)
        sys.exit(77)

tmp = tempfile.mkdtemp(prefix="mmp_hf_")
os.environ["HF_HOME"] = os.path.join(tmp, "hf_home")
os.environ["HF_DATASETS_OFFLINE"] = "1"
datasets.disable_progress_bars()
datasets.logging.set_verbosity_error()
failures = 0
IMGS = ["base420.jpg", "rgb.png", "prog.jpg", "gray.jpg"]


def put(root, rel, k=0):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    shutil.copy(os.path.join(FX, IMGS[k % len(IMGS)]), p)


def write(root, rel, text, encoding="utf-8"):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w", encoding=encoding, newline="") as f:
        f.write(text)


def mmp(d, split):
    cmd = [DECODE, d] + (["--split", split] if split else [])
    dec = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    out = subprocess.run([CAT], input=dec.stdout, stdout=subprocess.PIPE, check=True).stdout.decode()
    lines = [json.loads(line) for line in out.splitlines()]
    return lines[0].get("classes", []), lines[1:]


def check(name, d, split=None, want_splits=None):
    global failures
    dd = datasets.load_dataset("imagefolder", data_dir=d, cache_dir=os.path.join(tmp, "cache"))
    if want_splits is not None and sorted(dd.keys()) != sorted(want_splits):
        print("FAIL %s: datasets found splits %s, expected %s" % (name, sorted(dd.keys()), want_splits))
        failures += 1
    for sp in dd.keys() if split is None else [split]:
        ds = dd[sp].cast_column("image", datasets.Image(decode=False))
        classes, recs = mmp(d, sp if (split or len(dd) > 1 or sp != "train") else None)
        feats = ds.features
        hf_ids = [os.path.relpath(r["image"]["path"], d) for r in ds]
        mm_ids = [os.path.relpath(r["id"], d) for r in recs]
        errs = []
        if hf_ids != mm_ids:
            errs.append("files %s != %s" % (hf_ids, mm_ids))
        lab = feats.get("label")
        if isinstance(lab, datasets.ClassLabel):
            if lab.names != classes:
                errs.append("classes %s != %s" % (lab.names, classes))
            got = [r.get("label", -1) for r in recs]
            if ds["label"] != got:
                errs.append("labels %s != %s" % (ds["label"], got))
        elif lab is not None and lab.dtype == "string":
            got = [r.get("class") for r in recs]
            if ds["label"] != got:
                errs.append("class names %s != %s" % (ds["label"], got))
            if sorted(set(x for x in ds["label"] if x is not None)) != classes:
                errs.append("classes %s != %s" % (sorted(set(ds["label"])), classes))
        elif lab is not None:
            got = [r.get("label", -1) for r in recs]
            if ds["label"] != got:
                errs.append("labels %s != %s" % (ds["label"], got))
        else:
            if any(r.get("label") not in (None, -1) for r in recs) or classes:
                errs.append("datasets has no label, mmp-decode gives %s" % classes)
        for col in ("text", "caption"):
            if col in feats:
                got = [r.get("text") for r in recs]
                want = [x if x else None for x in ds[col]]
                if want != got:
                    errs.append("%s %s != %s" % (col, want, got))
        print("%s %s/%s: %d files%s" % ("FAIL" if errs else "ok", name, sp, len(hf_ids), "; " + "; ".join(errs) if errs else ""))
        failures += bool(errs)


try:
    # metadata.jsonl, file_name in a sub-folder, string labels, text, an extra
    # column; an image without metadata is not part of the data set
    d = os.path.join(tmp, "jsonl")
    put(d, "images/a.jpg", 0)
    put(d, "images/b.png", 1)
    put(d, "c.jpg", 2)
    write(d, "metadata.jsonl",
          '{"file_name": "images/b.png", "label": "dog", "text": "a dog", "n": 1}\n'
          '{"file_name": "images/a.jpg", "label": "cat", "text": "a cat", "n": 2}\n'
          '{"file_name": "./c.jpg", "label": "cat", "text": "", "n": 3}\n')
    check("jsonl", d, want_splits=["train"])
    # metadata.csv with a byte order mark, quoted comma and newline, integer labels
    d = os.path.join(tmp, "csv")
    put(d, "x/1.jpg", 0)
    put(d, "x/2.png", 1)
    write(d, "metadata.csv", 'file_name,label,text\nx/2.png,3,"two, with a comma"\n"x/1.jpg",0,"line\none"\n',
          encoding="utf-8-sig")
    check("csv-bom", d)
    # split folders with class folders, no metadata: labels from the class folders
    d = os.path.join(tmp, "splits")
    k = 0
    for sp in ("train", "valid", "test"):
        for c in ("dog", "cat"):
            for i in range(2):
                put(d, "%s/%s/%d.jpg" % (sp, c, i), k)
                k += 1
    put(d, "test/bird/0.png", 1)
    check("split-folders", d, want_splits=["train", "validation", "test"])
    # split folders, one metadata.jsonl each (with a label column of numbers)
    d = os.path.join(tmp, "split-meta")
    for sp in ("train", "test"):
        put(d, "%s/0.jpg" % sp, 0)
        put(d, "%s/1.png" % sp, 1)
        write(d, "%s/metadata.jsonl" % sp, '{"file_name": "1.png", "label": 1, "caption": "one %s"}\n'
              '{"file_name": "0.jpg", "label": 0, "caption": "zero %s"}\n' % (sp, sp))
    check("split-metadata", d, want_splits=["train", "test"])
    # split words in folder names: "training-2024", "my_eval", "dev.1"
    d = os.path.join(tmp, "split-names")
    put(d, "training-2024/a/0.jpg", 0)
    put(d, "training-2024/b/0.jpg", 1)
    put(d, "my_eval/a/1.jpg", 2)
    put(d, "dev.1/b/2.jpg", 3)
    check("split-names", d, want_splits=["train", "validation", "test"])
    # one class folder in train, two in test: datasets labels test only
    d = os.path.join(tmp, "late-labels")
    put(d, "train/cat/0.jpg", 0)
    put(d, "train/cat/1.jpg", 1)
    put(d, "test/cat/2.jpg", 2)
    put(d, "test/dog/3.jpg", 3)
    check("late-labels", d, want_splits=["train", "test"])
    # class folders at two depths: no labels (a folder without split folders
    # or metadata is a torchvision ImageFolder instead)
    d = os.path.join(tmp, "depths")
    put(d, "train/cat/0.jpg", 0)
    put(d, "train/dog/x/1.jpg", 1)
    put(d, "train/notes.txt", 1)
    check("depths", d)
    # flat folder: no labels
    d = os.path.join(tmp, "flat")
    for i in range(3):
        put(d, "img%d.jpg" % i, i)
    check("flat", d)
    # split words in file names (a folder without class folders)
    d = os.path.join(tmp, "split-files")
    put(d, "train_0.jpg", 0)
    put(d, "train-1.jpg", 1)
    put(d, "x-test-0.png", 2)
    put(d, "test.jpg", 3)
    check("split-filenames", d, want_splits=["train", "test"])
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(1 if failures else 0)
