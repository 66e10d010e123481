"""Build the double-click bundle (dist/retrieval-explorer/) from a checkout, then prove it works.

    python scripts/build_bundle.py                  # CPU-only torch, in a build venv under build/ (default)
    python scripts/build_bundle.py --torch current  # whatever torch the running Python has (PyPI: CUDA)

Why a separate build environment: PyPI's torch for Linux is the CUDA build, and a bundle of it carries
several GB of NVIDIA libraries that a CPU desktop app never loads. `pip install torch==2.13.0` takes a
CPU-only wheel where one is offered (on this project's machines a local file; elsewhere pass
`--torch-requirement` and pip options such as `--pip-arg=--index-url=...` for a CPU wheel index). PyPI has no
CPU build of torchvision; its CUDA wheel imports next to CPU torch once its compiled ops are left out (see
explorer.spec and scripts/pyi_rth_torchvision_ops.py), and the app never calls those ops.

Steps, each reported with its time: make or reuse the build venv (its packages are re-installed only when
the requirements change), run PyInstaller on explorer.spec, make the folder readable by everyone (the
repository's model files are 0600), report the bundle's size and largest parts, and run
`dist/retrieval-explorer/retrieval-explorer --self-test` headless. Exit status: the self-test's (0 = bundle
works), or non-zero when a step before it failed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
APP = "retrieval-explorer"
DEFAULT_VENV = ROOT / "build" / "bundle-venv"
# torchvision 0.28 is the release built for torch 2.13 (it pins torch==2.13.0).
DEFAULT_TORCH = "torch==2.13.0"
DEFAULT_TORCHVISION = "torchvision==0.28.0"


def log(msg: str) -> None:
    print(f"[build_bundle] {msg}", flush=True)


def run(cmd: list[str], **kwargs: object) -> None:
    log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def app_requirements() -> list[str]:
    """The app's run-time dependencies plus the bundle and HEIF extras, read from pyproject.toml.

    torch and torchvision are left out: they are installed first, pinned, so that these ranges are already
    satisfied and pip does not replace the CPU build with PyPI's newest (CUDA) one.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["bundle"]]
    reqs += project["optional-dependencies"].get("heif", [])
    return [r for r in reqs if not r.lower().startswith(("torch>", "torch=", "torch ", "torchvision"))]


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def prepare_build_venv(venv: Path, torch_req: str, tv_req: str, pip_args: list[str], fresh: bool) -> Path:
    """Create (or reuse) the build venv; reinstall only when the requirements changed since last time."""
    wanted = [torch_req, tv_req, *app_requirements()]
    stamp_text = "\n".join([*wanted, *pip_args, sys.version])
    stamp = venv / "bundle-requirements.sha256"
    digest = hashlib.sha256(stamp_text.encode()).hexdigest()
    if fresh and venv.exists():
        shutil.rmtree(venv)
    py = venv_python(venv)
    if py.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        log(f"reusing build venv {venv} (requirements unchanged)")
        return py
    if not py.exists():
        run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", *pip_args]
    # torchvision's wheel pins torch exactly; --no-deps keeps pip from second-guessing the torch build
    run([*pip, torch_req])
    run([*pip, "--no-deps", tv_req])
    run([*pip, *app_requirements()])
    stamp.write_text(digest + "\n")
    return py


def ensure_pyinstaller(py: Path) -> None:
    """The current-environment build installs PyInstaller (the project's `bundle` extra) when missing."""
    probe = subprocess.run([str(py), "-c", "import PyInstaller"], capture_output=True)
    if probe.returncode != 0:
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        run([str(py), "-m", "pip", "install", *project["optional-dependencies"]["bundle"]])


def describe_torch(py: Path) -> str:
    code = "import torch; v = torch.version.cuda; print(torch.__version__, f'CUDA {v}' if v else 'CPU-only')"
    res = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    return res.stdout.strip() or f"torch does not import: {res.stderr.strip()[-500:]}"


def tree_size(path: Path) -> int:
    """Bytes on disk of the files under `path`, links not followed (as `du -s --apparent-size` counts)."""
    total = 0
    for p in path.rglob("*"):
        st = p.lstat()
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
    return total


def largest_parts(internal: Path, n: int = 12) -> list[tuple[int, str]]:
    parts = [(tree_size(p) if p.is_dir() else p.lstat().st_size, p.name) for p in internal.iterdir()]
    return sorted(parts, reverse=True)[:n]


def make_readable(path: Path) -> None:
    """Give everyone read (and directory search) access: a bundle is installed for all users of a machine."""
    for p in [path, *path.rglob("*")]:
        if p.is_symlink():
            continue
        mode = p.stat().st_mode
        extra = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
        if p.is_dir() or mode & stat.S_IXUSR:
            extra |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
        p.chmod(mode | extra)


def self_test(exe: Path, timeout: int) -> int:
    """Run the built app's --self-test as a user's machine would, headless, and show all it printed."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYTHONPATH")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    log(f"$ QT_QPA_PLATFORM=offscreen {exe} --self-test")
    t0 = time.perf_counter()
    try:
        res = subprocess.run([str(exe), "--self-test"], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"self-test did not finish within {timeout} s")
        return 124
    print(res.stdout, end="", flush=True)
    if res.stderr.strip():
        print("--- stderr ---\n" + res.stderr, end="", flush=True)
    log(f"self-test exit code {res.returncode} ({time.perf_counter() - t0:.1f} s, cold start included)")
    return res.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--torch",
        choices=("cpu", "current"),
        default="cpu",
        help="cpu: build venv with CPU-only torch (default); current: the running Python's packages",
    )
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="build venv for --torch cpu")
    p.add_argument("--fresh-venv", action="store_true", help="delete and recreate the build venv")
    p.add_argument("--torch-requirement", default=DEFAULT_TORCH)
    p.add_argument("--torchvision-requirement", default=DEFAULT_TORCHVISION)
    p.add_argument("--pip-arg", action="append", default=[], help="extra pip option for the build venv")
    p.add_argument("--skip-self-test", action="store_true")
    p.add_argument("--self-test-timeout", type=int, default=600)
    args = p.parse_args(argv)

    started = time.perf_counter()
    if args.torch == "cpu":
        t0 = time.perf_counter()
        py = prepare_build_venv(
            args.venv.resolve(), args.torch_requirement, args.torchvision_requirement, args.pip_arg, args.fresh_venv
        )
        log(f"build environment ready ({time.perf_counter() - t0:.1f} s)")
    else:
        py = Path(sys.executable)
        ensure_pyinstaller(py)
    torch_desc = describe_torch(py)
    log(f"python {py}; torch {torch_desc}")
    if args.torch == "cpu" and "CPU-only" not in torch_desc:
        log("WARNING: pip did not install a CPU-only torch here; the bundle will carry the CUDA libraries")

    t0 = time.perf_counter()
    export = (
        "from trainer.onnx_export import export_beside; from trainer.paths import BUNDLED_MODEL as m; "
        "print(export_beside(m))"
    )
    run([str(py), "-c", export], cwd=ROOT)  # resources/models/default.onnx, checked against torch (explorer.spec)
    log(f"ONNX runtime file exported ({time.perf_counter() - t0:.1f} s)")
    dist, work = ROOT / "dist", ROOT / "build" / "pyinstaller"
    t0 = time.perf_counter()
    run(
        [str(py), "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level=WARN",
         "--distpath", str(dist), "--workpath", str(work), str(ROOT / "explorer.spec")],
        cwd=ROOT,
    )  # fmt: skip
    build_s = time.perf_counter() - t0
    bundle = dist / APP
    make_readable(bundle)
    size = tree_size(bundle)
    log(f"PyInstaller build: {build_s:.0f} s; bundle {bundle}: {size / 2**20:.0f} MiB")
    internal = bundle / "_internal"
    if internal.is_dir():
        for nbytes, name in largest_parts(internal):
            log(f"    {nbytes / 2**20:8.1f} MiB  _internal/{name}")
    if args.skip_self_test:
        log(f"done in {time.perf_counter() - started:.0f} s (self-test skipped)")
        return 0
    rc = self_test(bundle / (APP + (".exe" if os.name == "nt" else "")), args.self_test_timeout)
    total_s = time.perf_counter() - started
    log(f"done in {total_s:.0f} s; PyInstaller {build_s:.0f} s, bundle {size / 2**20:.0f} MiB, self-test rc {rc}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
