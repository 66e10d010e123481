"""`bench/gpu_run.py --smoke`: every step of the GPU run, on generated data on the CPU, then judged from its files.

The GPU run has one chance on a lent machine; this is how CI (and anyone preparing such a run) knows that the
script gets through every step and that `--report-from` can judge what it saves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT_ROOT / "bench" / "gpu_run.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=400)


def test_the_smoke_run_gets_through_every_step_and_its_files_can_be_judged(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    done = run("--smoke", "--out", str(out), "--work", str(work))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = json.loads((out / "gpu_run.json").read_text())["steps"]
    assert list(steps) == [
        "environment", "gpu tests", "embedding throughput", "training throughput", "paper schedule, 49 -> 49",
        "paper schedule, all 98 classes", "variant: backbone lr x0.1, 49 -> 49",
    ]  # fmt: skip
    assert not any("error" in s or "skipped" in s for s in steps.values())
    assert "skipped" in steps["gpu tests"]["summary"]  # no CUDA here: the GPU tests skip, they do not fail
    assert steps["embedding throughput"]["with_decoding"]["images"] == 48
    assert steps["training throughput"]["batch 8"]["images_per_s"] > 0
    assert {p.name for p in out.iterdir()} >= {"emb-half.npz", "emb-variant.npz", "cars98-all-paper-512.safetensors"}

    report = tmp_path / "report.md"
    judged = run("--report-from", str(out), "--data", str(work / "smoke-data"), "--out", str(report))
    assert judged.returncode == 0, judged.stderr[-3000:]
    text = report.read_text()
    assert "| NormSoftmax fine-tuned | 64 |" in text and "float NMI" in text
    assert "### Throughput on the GPU" in text
