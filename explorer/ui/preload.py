"""Load torch's shared libraries without holding the GIL, so that importing torch on a worker thread does
not freeze the window.

CPython keeps the GIL while `dlopen()` maps and relocates an extension module's libraries. For torch that
is about half a second even with a warm disk cache (libtorch_cpu alone is some 450 MB), and the GUI thread
cannot run a single event meanwhile (measured by bench/gui_responsiveness.py). A foreign call through
ctypes releases the GIL, so calling libc's `dlopen` on the same files first, from the worker, does the
expensive part while the window keeps painting; the `import torch` that follows finds them loaded. The
flags mirror torch's own loading (its global dependencies with RTLD_GLOBAL, `torch._C` with Python's
flags), so only the timing changes. Linux only, and best effort: anything unexpected just skips it.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import sys


def preload_torch_libraries() -> bool:
    """dlopen torch's native libraries with the GIL released; True if they were loaded here."""
    if not sys.platform.startswith("linux") or "torch" in sys.modules or getattr(sys, "frozen", False):
        return False
    try:
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.origin is None:
            return False
        root = os.path.dirname(spec.origin)
        extension = sorted(glob.glob(os.path.join(root, "_C.*.so")) + glob.glob(os.path.join(root, "_C.so")))
        if not extension:
            return False
        libc = ctypes.CDLL(None)
        dlopen = libc.dlopen
        dlopen.restype = ctypes.c_void_p
        dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        global_deps = os.path.join(root, "lib", "libtorch_global_deps.so")
        if os.path.exists(global_deps):
            dlopen(os.fsencode(global_deps), os.RTLD_NOW | os.RTLD_GLOBAL)
        return bool(dlopen(os.fsencode(extension[0]), sys.getdlopenflags()))
    except (OSError, AttributeError, ValueError):
        return False
