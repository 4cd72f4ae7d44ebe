#!/usr/bin/python3
"""PyTorch peer for bench_embed.sh: forward-only img/s of torchvision models.
usage: bench_embed_torch.py MNV2_WEIGHTS CONFIG...   CONFIG = arch:size:threads:batches
Prints "arch size threads img/s maxrss_MB" per config (batch 64, after one warm-up
batch of 8, best of 2 timings, torch.no_grad, eval mode, torch.set_num_threads(threads)).
ResNets have random weights; MobileNetV2 loads the real safetensors."""
import os, resource, sys, time
import torch, torchvision
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
from st_io import st_read  # noqa: E402


def load_st(path):
    """name -> torch tensor of a safetensors file (metadata dropped)."""
    return {k: torch.from_numpy(a) for k, a in st_read(path).items()}


def main():
  torch.manual_seed(0)
  models = {}
  for cfg in sys.argv[2:]:
      arch, size, threads, nb = cfg.split(":")
      size, threads, nb = int(size), int(threads), int(nb)
      if arch not in models:
          m = getattr(torchvision.models, arch)()
          if arch == "mobilenet_v2":
              m.load_state_dict(load_st(sys.argv[1]))
          models[arch] = m.eval()
      m = models[arch]
      torch.set_num_threads(threads)
      x = torch.randn(64, 3, size, size)
      with torch.no_grad():
          m(x[:8])
          dt = 1e30
          for _ in range(2):  # best of 2, as for mmpipe (the machine may be shared)
              t0 = time.perf_counter()
              for _ in range(nb):
                  m(x)
              dt = min(dt, time.perf_counter() - t0)
      rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
      print(arch, size, threads, "%.2f" % (64 * nb / dt), "%.0f" % rss, flush=True)


if __name__ == "__main__":
    main()
