"""PyInstaller runtime hook (used by explorer.spec): let torchvision import in a bundle built on CPU-only torch.

PyPI has no CPU build of torchvision: its Linux wheels' compiled ops (`torchvision/_C.so`) link against
torch's CUDA libraries, so next to a CPU-only torch they cannot load, and the spec leaves them out.
torchvision copes with missing ops everywhere but in `_meta_registrations`, which registers fake kernels for
`torchvision::nms`/`qnms` unconditionally and so fails the whole `import torchvision` with
"operator torchvision::nms does not exist" (pytorch/vision#9085). timm imports torchvision, and the app
imports timm to build the network, so the app needs torchvision to import; it never calls torchvision's
compiled ops (no detection models, no torchvision image decoding).

This hook declares the two operator schemas, without kernels, just before torchvision is first imported,
so the registrations succeed; calling them would still raise "no kernel". It does nothing when the bundle
carries torchvision's compiled ops (a CUDA-torch build), where they define the schemas themselves.

It runs before the app's own code, so it must not import torch here: that would cost seconds before the
window shows. It only installs an import finder, which defers the work to the first `import torchvision`.
"""

from __future__ import annotations

import glob
import importlib.abc
import os
import sys
from typing import Any

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_keep_alive: list[Any] = []  # a torch.library.Library unregisters its definitions when garbage-collected


class _DeclareTorchvisionOps(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        import torch

        lib = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _SCHEMAS:
            lib.define(schema)
        _keep_alive.append(lib)
        return None  # the ordinary finders import torchvision itself


_bundle = getattr(sys, "_MEIPASS", "")
if _bundle and not glob.glob(os.path.join(_bundle, "torchvision", "_C.*")):
    sys.meta_path.insert(0, _DeclareTorchvisionOps())
