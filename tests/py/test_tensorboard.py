"""mmp-train-step --tensorboard DIR, read back by TensorBoard's own reader
(EventAccumulator; skips without the tensorboard package):
- one event file named as SummaryWriter names it, first event file_version
  "brain.Event:2";
- scalars train/loss, train/lr at the --log-every steps, epoch/train_loss,
  dev/loss, dev/accuracy at each epoch's last global step, equal to the JSON
  log's values rounded to float32 (to one float32 step: the log's 9 digits can
  round a double to the neighbouring float), wall times next to the log's "time";
- runs continued from checkpoints (--init) add files; going back to an earlier
  checkpoint writes SummaryWriter(purge_step)'s events and TensorBoard shows
  each step once, the latest run's value;
- a truncated last record (a crash mid-write) is ignored by the reader, the
  records before it are all there;
- a DIR that cannot be made: one line, non-zero exit, no checkpoint."""
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import numpy as np

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError:
    print("tensorboard not installed")
    sys.exit(77)

ROOT = os.environ.get("MMP_ROOT", ".")
BUILD = os.environ.get("MMP_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(ROOT, "formats", "python"))
import mmp_stream  # noqa: E402

rng = np.random.default_rng(7)
D, C = 10, 3
for name, n in (("train.mmp", 250), ("dev.mmp", 90)):
    x = rng.normal(size=(n, D)).astype(np.float32)
    y = rng.integers(0, C, n)
    x[np.arange(n), y] += 2
    with mmp_stream.Writer(name, {"embedding": {"dtype": "f32", "shape": [D]}}, classes=list("abc"),
                           meta={"provenance": "tb-test"}) as w:
        for i in range(n):
            w.write({"embedding": x[i]}, id=str(i), label=int(y[i]))

exe = os.path.join(BUILD, "mmp-train-step")
fails = 0


def check(cond, what):
    global fails
    if not cond:
        print("FAIL:", what)
        fails += 1


epochs, batch, every = 4, 32, 3
r = subprocess.run([exe, "--epochs", str(epochs), "--batch-size", str(batch), "--lr", "0.01", "--schedule", "cosine",
                    "--warmup", "5", "--dev", "dev.mmp", "--log", "log.jsonl", "--log-every", str(every),
                    "--tensorboard", "runs/exp1", "--out", "h.safetensors", "train.mmp"], capture_output=True, text=True)
assert r.returncode == 0, r.stderr
log = [json.loads(line) for line in open("log.jsonl")]
steps = [e for e in log if "loss" in e]
ends = [e for e in log if "train_loss" in e]
check(len(ends) == epochs, "%d epoch entries" % len(ends))
check(all(isinstance(e["time"], float) for e in log), "a float time in every log entry")
check(all(a["time"] <= b["time"] for a, b in zip(log, log[1:])), "log times in order")

files = glob.glob("runs/exp1/*")
check(len(files) == 1, "one event file: %s" % files)
base = os.path.basename(files[0])
m = re.fullmatch(r"events\.out\.tfevents\.(\d{10})\.(.+)\.(\d+)\.0", base)
check(m and m.group(2) == socket.gethostname(), "file name %s" % base)
if m:
    check(abs(int(m.group(1)) - log[0]["time"]) < 60, "time in the file name")

ea = EventAccumulator("runs/exp1", size_guidance={"scalars": 0})
ea.Reload()
tags = set(ea.Tags()["scalars"])
want_tags = {"train/loss", "train/lr", "epoch/train_loss", "dev/loss", "dev/accuracy"}
check(tags == want_tags, "tags %s" % sorted(tags))
check(ea.file_version == 2.0, "file_version %r (\"brain.Event:2\" is read as 2.0)" % ea.file_version)

f32 = lambda v: float(np.float32(v))


def same(a, b):
    """a (TensorBoard's float32 of the double) is b (the log's %.9g text) rounded to
    float32, or its neighbour: 9 digits can move a double across the midpoint of two
    floats (double rounding), never further"""
    return a == b or (a != a and b != b) or abs(a - b) <= float(np.spacing(np.float32(abs(b))))


def same_series(got, want):
    return [s for s, _ in got] == [s for s, _ in want] and all(same(a, b) for (_, a), (_, b) in zip(got, want))


def series(tag):
    return [(e.step, e.value) for e in ea.Scalars(tag)] if tag in tags else []


def compare(tag, want):
    got = series(tag)
    check([s for s, _ in got] == [s for s, _ in want], "%s: steps %s, want %s" % (tag, [s for s, _ in got], [s for s, _ in want]))
    bad = [(s, a, b) for (s, a), (_, b) in zip(got, want) if not same(a, b)]
    check(not bad, "%s: values differ from the log's (step, tensorboard, log): %s" % (tag, bad[:3]))


per_epoch = -(-250 // batch)
check([e["step"] for e in steps] == list(range(every, epochs * per_epoch + 1, every)), "step entries every %d" % every)
compare("train/loss", [(e["step"], f32(e["loss"])) for e in steps])
compare("train/lr", [(e["step"], f32(e["lr"])) for e in steps])
compare("epoch/train_loss", [(e["step"], f32(e["train_loss"])) for e in ends])
compare("dev/loss", [(e["step"], f32(e["dev_loss"])) for e in ends])
compare("dev/accuracy", [(e["step"], f32(e["dev_metric"])) for e in ends])
check(len(set(v for _, v in series("train/lr"))) > 2, "the learning rate changes (warm-up, cosine)")
t0, t1 = log[0]["time"], log[-1]["time"]
walls = [e.wall_time for t in want_tags for e in ea.Scalars(t)] if tags == want_tags else []
check(walls and min(walls) >= t0 - 1 and max(walls) <= t1 + 1, "event wall times within the run")

# a crash mid-record: the reader stops at the truncated record, keeps the rest
data = open(files[0], "rb").read()
os.makedirs("runs/cut", exist_ok=True)
with open("runs/cut/" + base, "wb") as f:
    f.write(data[:-7])
ea2 = EventAccumulator("runs/cut", size_guidance={"scalars": 0})
ea2.Reload()
n_all = sum(len(series(t)) for t in tags)
n_cut = sum(len(ea2.Scalars(t)) for t in ea2.Tags()["scalars"])
check(n_cut == n_all - 1, "truncated file: %d of %d scalars" % (n_cut, n_all))
last_tag = "dev/accuracy"
check(len(ea2.Scalars(last_tag)) == epochs - 1, "the last record (dev/accuracy of the last epoch) is the one dropped")

# restarts: runs that continue from checkpoints (--init) write new files in the same DIR; one
# goes back to an earlier checkpoint (as after a crash mid-run) and writes SummaryWriter's
# purge_step events: TensorBoard shows every step once, the latest run's value
def train(*args):
    r = subprocess.run([exe, "--batch-size", str(batch), "--lr", "0.01", "--log", "log2.jsonl", "--tensorboard", "runs/exp2"]
                       + list(args) + ["train.mmp"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


train("--epochs", "2", "--out", "r.safetensors")
shutil.copy("r.safetensors", "r2.safetensors")
time.sleep(1.1)  # file names order by their second
train("--init", "r.safetensors", "--epochs", "1", "--lr", "0.05", "--out", "r.safetensors")  # epoch 3
time.sleep(1.1)
train("--init", "r2.safetensors", "--epochs", "2", "--out", "r.safetensors")  # epochs 3, 4 from epoch 2
check(len(glob.glob("runs/exp2/*")) == 3, "three event files")
log2 = [json.loads(line) for line in open("log2.jsonl")]
last = {}
for e in log2:
    last[("epoch" if "train_loss" in e else "step", e["step"])] = e
ea3 = EventAccumulator("runs/exp2", size_guidance={"scalars": 0})
ea3.Reload()
got = [(e.step, e.value) for e in ea3.Scalars("train/loss")]
want = sorted((k[1], f32(e["loss"])) for k, e in last.items() if k[0] == "step")
check(len(log2) > len(last), "the log holds the repeated epoch twice")
check(same_series(got, want), "after restarts: train/loss %d values, want %d (one per step, the latest run's)" % (len(got), len(want)))
got = [(e.step, e.value) for e in ea3.Scalars("epoch/train_loss")]
want = sorted((k[1], f32(e["train_loss"])) for k, e in last.items() if k[0] == "epoch")
check(same_series(got, want) and len(got) == 4, "after restarts: epoch/train_loss %s, want %s" % (got, want))

# a directory that cannot be made: one line, exit 1, before training
open("plain", "w").close()
r = subprocess.run([exe, "--tensorboard", "plain/tb", "--out", "bad.safetensors", "train.mmp"], capture_output=True, text=True)
check(r.returncode != 0, "bad --tensorboard DIR: exit 0")
check(r.stderr.count("\n") == 1 and r.stderr.startswith("mmp-train-step: plain/tb: "), "bad DIR message: %r" % r.stderr)
check(not os.path.exists("bad.safetensors"), "no checkpoint after a bad --tensorboard DIR")

if fails:
    sys.exit(1)
print("ok: %d scalars in %d tags" % (n_all, len(tags)))
