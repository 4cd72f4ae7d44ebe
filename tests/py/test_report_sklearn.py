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
sys.exit(1 if fails else 0)
