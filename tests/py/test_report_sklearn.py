"""mmp-report on prediction streams vs scikit-learn computed live (skips
without sklearn; the committed fixtures in tests/fixtures/train cover CI):
random cases incl. a class never predicted and one without support, the
text for digits 2 and 3 identical, the --json numbers identical."""
import json
import os
import subprocess
import sys

import numpy as np

try:
    from sklearn.metrics import classification_report
except ImportError:
    print("sklearn not installed")
    sys.exit(77)

ROOT = os.environ.get("MMP_ROOT", ".")
sys.path.insert(0, os.path.join(ROOT, "formats", "python"))
import mmp_stream  # noqa: E402

BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
REPORT = os.path.join(BUILD, "mmp-report")
fails = 0
rng = np.random.RandomState(11)
for case in range(6):
    C = int(rng.randint(2, 15))
    n = int(rng.randint(5, 400))
    names = ["class %d" % i if case % 2 else "c%d" % i for i in range(C)]
    yt = rng.randint(0, C, n)
    yp = np.where(rng.rand(n) < rng.rand(), yt, rng.randint(0, C, n))
    if C > 2:
        yp[yp == 1] = 0          # class 1 never predicted
        yt[yt == C - 1] = 0      # class C-1 without support
    path = "pred%d.mmp" % case
    with mmp_stream.Writer(path, {"pred": {"dtype": "i64", "shape": [1]}}, classes=names) as w:
        for i in range(n):
            w.write({"pred": np.array([yp[i]], dtype=np.int64)}, id=str(i), label=int(yt[i]))
    for digits in (2, 3):
        got = subprocess.run([REPORT, "--digits", str(digits), path], capture_output=True, text=True, check=True).stdout
        want = classification_report(yt, yp, labels=list(range(C)), target_names=names, digits=digits,
                                     zero_division="warn")
        if not got.startswith(want + "\n"):
            print("case %d digits %d: text differs\n--- got\n%s--- sklearn\n%s" % (case, digits, got, want))
            fails += 1
    got = json.loads(subprocess.run([REPORT, "--json", "-", path], capture_output=True, text=True, check=True).stdout)
    want = classification_report(yt, yp, labels=list(range(C)), target_names=names, output_dict=True,
                                 zero_division="warn")
    for k, v in want.items():
        if got.get(k) != v:
            print("case %d: %s: %r vs sklearn %r" % (case, k, got.get(k), v))
            fails += 1
    print("case %d: C=%d n=%d accuracy %.4f: %s" % (case, C, n, want["accuracy"], "ok" if not fails else "FAIL"))
# multi-label: "labels" targets + "probs", thresholded at 0.5 (and --threshold)
for case in range(4):
    C = int(rng.randint(2, 9))
    n = int(rng.randint(5, 200))
    names = ["tag%d" % i for i in range(C)]
    yt = (rng.rand(n, C) < 0.4).astype(np.float32)
    probs = np.clip(yt * 0.6 + rng.rand(n, C) * 0.5, 0, 1).astype(np.float32)
    if C > 2:
        probs[:, 1] = 0.1        # never predicted
        yt[:, C - 1] = 0         # no support
    path = "ml%d.mmp" % case
    with mmp_stream.Writer(path, {"labels": {"dtype": "f32", "shape": [C]}, "probs": {"dtype": "f32", "shape": [C]}},
                           classes=names) as w:
        for i in range(n):
            w.write({"labels": yt[i], "probs": probs[i]}, id=str(i))
    for thr in (0.5, 0.7):
        yp = (probs > thr).astype(int)
        got = subprocess.run([REPORT, "--threshold", str(thr), path], capture_output=True, text=True, check=True).stdout
        want = classification_report(yt.astype(int), yp, target_names=names, zero_division="warn")
        if got != want:
            print("ml case %d thr %g: text differs\n--- got\n%s--- sklearn\n%s" % (case, thr, got, want))
            fails += 1
    gotj = json.loads(subprocess.run([REPORT, "--json", "-", path], capture_output=True, text=True, check=True).stdout)
    wantj = classification_report(yt.astype(int), (probs > 0.5).astype(int), target_names=names, output_dict=True,
                                  zero_division="warn")
    for k, v in wantj.items():
        if gotj.get(k) != v:
            print("ml case %d: %s: %r vs sklearn %r" % (case, k, gotj.get(k), v))
            fails += 1
    print("ml case %d: C=%d n=%d micro F1 %.4f: %s" % (case, C, n, wantj["micro avg"]["f1-score"], "ok" if not fails else "FAIL"))
sys.exit(1 if fails else 0)
