"""mmp-export -> PyTorch (skips without torch): the exported linear and MLP
heads load into the modules documented in docs/train.md with
load_state_dict(strict=True) and, on the raw features (the standardization
is folded in), give mmp-eval's logits of the checkpoints."""
import sys

try:
    import torch
except ImportError:
    print("torch not installed")
    sys.exit(77)

from export_data import C, D, DROPOUT, HIDDEN, make, read_st  # noqa: E402


class MLPHead(torch.nn.Module):  # docs/train.md, mmp-export: --head mlp --hidden H1,H2,... --dropout p
    def __init__(self, d, hidden, c, p):
        super().__init__()
        dims, mods = [d] + list(hidden), []
        for a, b in zip(dims, dims[1:]):
            mods += [torch.nn.Linear(a, b), torch.nn.ReLU(), torch.nn.Dropout(p)]
        self.layers = torch.nn.Sequential(*mods, torch.nn.Linear(dims[-1], c))

    def forward(self, v):
        return self.layers(v)


x, out = make()
modules = {"linear": torch.nn.Linear(D, C), "mlp": MLPHead(D, HIDDEN, C, DROPOUT)}
fails = 0
for kind, (path, want) in out.items():
    sd, _ = read_st(path)
    m = modules[kind].eval()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    with torch.no_grad():
        got = m(torch.from_numpy(x)).numpy()
    tol = 1e-5 * (1 + abs(want).max())
    err = abs(got - want).max()
    print("%s: torch module (strict=True) vs mmp-eval of the checkpoint: max |diff| %.2e (tol %.1e)" % (kind, err, tol))
    fails += not err <= tol
sys.exit(1 if fails else 0)
