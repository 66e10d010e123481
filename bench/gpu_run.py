"""Everything the GPU path has to show, in one run on a lent GPU machine (at most 9 minutes), or `--smoke` on a CPU.

Steps, each timed, each printed, all figures also in `<out>/gpu_run.json`:

1. the GPU tests (`pytest -m gpu tests/trainer/test_cuda.py`; on a CPU they skip);
2. embedding throughput of the bundled model on real JPEGs, decoding included, and of the model alone on
   already-decoded batches, with the GPU's utilisation; how far float16 and bfloat16 embeddings on the device
   are from float32 ones on the CPU (cosine, sign bits);
3. training throughput of the trainer's own step at 224 px with the whole backbone training (images/s,
   utilisation, peak memory), batches of 75 (the paper's) and 300;
4. the paper's schedule on cars98, 49 -> 49 classes: whole backbone, 224 px, NormSoftmax, nested 512-d, 30
   epochs of 25 x 3 batches (bench/cars_finetune.py's FULL_RECIPE): R@1/2/4/8, MAP@R, NMI, float and binary, per
   dimension, beside the untrained backbone (`<out>/cars98_gpu.md`), with the per-step loss around the unfreeze;
5. the same schedule on all 98 classes; the model is kept (`<out>/cars98-all-paper-512.*`, weights in float16)
   for judging on Cars-196's other 98 classes;
6. if minutes remain: the 49 -> 49 run again with the backbone at a tenth of the learning rate (a measurement
   for the fine-tuning defaults, reported beside step 4, never used to pick step 5's recipe).

    .venv/bin/python bench/gpu_pack.py                            # here: pack data and weights into .gpu/
    PYTHONPATH=.gpu/site python3 bench/gpu_run.py --data .gpu/cars98 --out $OUT     # there
    .venv/bin/python bench/gpu_run.py --smoke --out /tmp/smoke    # here: the same steps on generated data, CPU

A step that fails is reported and the run goes on to the next one; the exit status is 1 if any step failed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _cars_protocol import Run, train, untrained_model
from cars_finetune import FULL_RECIPE, finetune_report

import trainer.inference as inference_module
from trainer.data import LabelledFolder, scan_labelled_folder, split_by_class
from trainer.devices import autocast_for, pick_device
from trainer.evaluation import embed_folder, embedding_metrics
from trainer.fit import FitCallbacks, FitConfig, _Trainer
from trainer.images import load_for_model
from trainer.inference import BatchEmbedder, embed_all
from trainer.model import load_model, save_model
from trainer.progress import never_cancelled

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_MODEL = ROOT / "resources" / "models" / "default"
CPU_RESULTS = ROOT / "bench" / "results" / "cars_finetune.md"
KEPT_MODEL = "cars98-all-paper-512"


# -- measuring -------------------------------------------------------------------------------------------------


class Utilisation:
    """Samples the GPU's utilisation (percent of time a kernel ran) every 0.2 s while in its `with` block."""

    def __init__(self, device: torch.device) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._read = _utilisation_reader(device)
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            value = self._read()
            if value is not None:
                self.samples.append(value)

    def __enter__(self) -> Utilisation:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def _utilisation_reader(device: torch.device) -> Callable[[], float | None]:
    if device.type != "cuda":
        return lambda: None
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:
        return lambda: None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Report:
    """What the run found, step by step; written to JSON after every step so a cut-off run keeps its part."""

    out: Path
    started: float = field(default_factory=time.perf_counter)
    steps: dict[str, Any] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        record: dict[str, Any] = {}
        self.steps[name] = record
        began = time.perf_counter()
        print(f"\n== {name} (at {self.elapsed():.0f} s)", flush=True)
        try:
            yield record
        except Exception as exc:
            traceback.print_exc()
            record["error"] = f"{type(exc).__name__}: {exc}"
            self.failed.append(name)
        record["seconds"] = round(time.perf_counter() - began, 1)
        print(f"-- {name}: {record['seconds']} s", flush=True)
        self.save()

    def fits(self, name: str, seconds: float, budget: float) -> bool:
        """Whether a step of about `seconds` fits the budget; when not, it is recorded as skipped, with why."""
        if self.elapsed() + seconds <= budget:
            return True
        self.steps[name] = {"skipped": f"would need ~{seconds:.0f} s more"}
        return False

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"steps": self.steps, "failed": self.failed}, indent=2, default=_plain)
        (self.out / "gpu_run.json").write_text(text + "\n", encoding="utf-8")


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


# -- the steps -------------------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "torch": torch.__version__, "device": str(device), "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }  # fmt: skip
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                   capability=[props.major, props.minor], bf16=torch.cuda.is_bf16_supported())  # fmt: skip
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            env["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,power.limit", "--format=csv,noheader"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
    return env


def gpu_tests(record: dict[str, Any]) -> None:
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/trainer/test_cuda.py", "-q", "-s", "-rs",
               "-p", "no:cacheprovider"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    output = done.stdout + done.stderr
    print(output[-6000:], flush=True)
    record["exit_status"] = done.returncode
    record["summary"] = output.strip().splitlines()[-1] if output.strip() else ""
    record["measured"] = [line.strip() for line in output.splitlines() if "cosine" in line or "relative to" in line]
    if done.returncode not in (0, 5):  # 5: every test skipped or deselected (no CUDA)
        raise RuntimeError(f"GPU tests failed: {record['summary']}")


def embedding_throughput(record: dict[str, Any], paths: list[Path], device: torch.device, smoke: bool) -> None:
    embedder = BatchEmbedder(load_model(BUNDLED_MODEL), device)
    record["batch_size"], record["decode_workers"] = embedder.batch_size, embedder.decode_workers
    embed_all(embedder, paths[: embedder.batch_size])  # warm-up: kernel selection, allocator
    with Utilisation(device) as use:
        began = time.perf_counter()
        kept, _emb, skipped = embed_all(embedder, paths)
        seconds = time.perf_counter() - began
    record["with_decoding"] = {"images": len(kept), "skipped": len(skipped), "images_per_s": len(kept) / seconds,
                               "gpu_utilisation_pct": use.mean}  # fmt: skip
    card = embedder.card
    arrays = np.stack([load_for_model(p, card.resize_size, card.input_size) for p in paths[: embedder.batch_size]])
    repeats = 3 if smoke else 30
    embedder.embed_arrays(arrays)
    with Utilisation(device) as use:
        sync(device)
        began = time.perf_counter()
        for _ in range(repeats):
            embedder.embed_arrays(arrays)
        sync(device)
        seconds = time.perf_counter() - began
    record["model_alone"] = {
        "images_per_s": repeats * len(arrays) / seconds, "gpu_utilisation_pct": use.mean,
        "includes": "host-to-device copy of uint8 batches, normalisation, forward, copy back",
    }  # fmt: skip
    reference = BatchEmbedder(load_model(BUNDLED_MODEL), "cpu").embed_arrays(arrays)
    record["against_cpu_float32"] = {
        "float16 (the product's inference)": _agreement(reference, embedder.embed_arrays(arrays)),
        "bfloat16": _agreement(reference, _embed_with(embedder, arrays, autocast_for)),
    }
    print(json.dumps(record, indent=1, default=_plain), flush=True)


def _embed_with(embedder: BatchEmbedder, arrays: np.ndarray, autocast: Any) -> np.ndarray:
    saved = inference_module.inference_autocast_for
    inference_module.inference_autocast_for = autocast
    try:
        return embedder.embed_arrays(arrays)
    finally:
        inference_module.inference_autocast_for = saved


def _agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    cosine = (reference * other).sum(1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1))
    return {"cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
            "sign_bits_agreeing_pct": 100 * float(((reference > 0) == (other > 0)).mean())}  # fmt: skip


def training_throughput(record: dict[str, Any], train_set: LabelledFolder, device: torch.device, smoke: bool) -> None:
    """The trainer's own step (bf16 autocast, channels_last on a GPU) on decoded batches: the model's ceiling."""
    crop = 64 if smoke else 224
    config = replace(FULL_RECIPE, device=str(device), crop_size=crop, num_workers=0)
    run = _Trainer(train_set, Path("/tmp/gpu-run-throughput/m"), config, None, "efficientnet_lite0", None,
                   FitCallbacks(), never_cancelled)  # fmt: skip
    run._set_epoch_lr(config.warmup_epochs)
    run._set_train_mode(False)
    n_classes = len(train_set.classes)
    for batch in (8,) if smoke else (75, 300):
        images = torch.randint(0, 256, (batch, crop, crop, 3), dtype=torch.uint8)
        labels = torch.arange(batch, device=device) % n_classes
        if device.type == "cuda":
            images = images.pin_memory()
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(2 if smoke else 5):
            run._step(images, labels, False, False)
        steps = 2 if smoke else 40
        with Utilisation(device) as use:
            sync(device)
            began = time.perf_counter()
            for _ in range(steps):
                run._step(images, labels, False, False)
            sync(device)
            seconds = time.perf_counter() - began
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        record[f"batch {batch}"] = {"images_per_s": steps * batch / seconds, "ms_per_step": 1000 * seconds / steps,
                                    "gpu_utilisation_pct": use.mean, "peak_memory_gib": peak, "crop": crop}  # fmt: skip
        print(f"batch {batch}: {record[f'batch {batch}']}", flush=True)


def paper_schedule(
    record: dict[str, Any], train_set: LabelledFolder, config: FitConfig, work: Path, device: torch.device
) -> Run:
    """One run into its own `work` folder (a checkpoint is keyed by the settings, not by the data)."""
    steps: list[tuple[int, int, float]] = []

    def on_batch(step: int, epoch: int, loss: float, _lr: float) -> None:
        steps.append((step, epoch, loss))

    with Utilisation(device) as use:
        run = train(train_set, "normsoftmax", config, work=work, log=lambda t: print(t, flush=True), on_batch=on_batch)
    images = len(steps) * min(config.classes_per_batch, len(train_set.classes)) * config.per_class
    record.update(train_minutes=run.seconds / 60, images_per_s=images / run.seconds if steps else None,
                  gpu_utilisation_pct=use.mean, skipped_steps=run.skipped_steps, epoch_losses=run.losses)  # fmt: skip
    per_epoch = max(1, len(steps) // max(1, config.epochs))
    unfreeze = config.warmup_epochs * per_epoch
    record["loss_around_unfreeze"] = [round(loss, 3) for _, _, loss in steps[max(0, unfreeze - 5) : unfreeze + 25]]
    return run


def judge(
    record: dict[str, Any],
    run: Run,
    config: FitConfig,
    test: LabelledFolder,
    device: torch.device,
    out: Path,
    name: str,
    with_untrained: bool = True,
) -> tuple[Any, Any, Any]:
    """Metrics of the untrained backbone and the trained model on the test classes; the embeddings, labels and
    what the run was go to `<out>/emb-<name>.npz`, so that `--report-from` can judge them anywhere (NMI and F1
    need faiss, which a GPU machine may lack: then they are computed there)."""
    trained = load_model(run.model_path)
    clustering = importlib.util.find_spec("faiss") is not None
    _, labels, after_emb = embed_folder(trained, test, str(device))
    after = embedding_metrics(after_emb, labels, trained.card.nested_dims, clustering)
    arrays: dict[str, np.ndarray] = {"labels": labels, "trained": after_emb}
    before = None
    if with_untrained:
        _, labels_before, before_emb = embed_folder(untrained_model(), test, str(device))
        assert np.array_equal(labels, labels_before)
        before = embedding_metrics(before_emb, labels, [1280], clustering)
        arrays["untrained"] = before_emb
        for rep in ("float", "binary"):
            record[f"{rep} R@1 untrained 1280"] = 100 * before[rep][1280]["R@1"]
    for rep in ("float", "binary"):
        for d in trained.card.nested_dims:
            record[f"{rep} R@1 @{d}"] = 100 * after[rep][d]["R@1"]
    meta = {
        "config": asdict(config),
        "losses": run.losses,
        "seconds": run.seconds,
        "dims": trained.card.nested_dims,
        "record": {k: v for k, v in record.items() if not k.startswith(("float", "binary"))},
    }
    np.savez_compressed(out / f"emb-{name}.npz", meta=np.array(json.dumps(meta, default=_plain)), **arrays)  # type: ignore[arg-type]
    return trained, before, after


def keep_model(record: dict[str, Any], run: Run, out: Path, description: str, sample: list[Path]) -> None:
    """The model with float16 weights (half the bytes; embeddings checked against the float32 ones)."""
    model = load_model(run.model_path)
    model.card = replace(model.card, name=KEPT_MODEL, description=description)
    full = BatchEmbedder(load_model(run.model_path), "cpu").embed_arrays(_decoded(sample, model.card))
    save_model(model.half(), out / KEPT_MODEL, model.card)
    halved = BatchEmbedder(load_model(out / KEPT_MODEL), "cpu").embed_arrays(_decoded(sample, model.card))
    record["float16_weights_against_float32"] = _agreement(full, halved)
    record["files"] = sorted(p.name for p in out.glob(f"{KEPT_MODEL}.*"))


def _decoded(paths: list[Path], card: Any) -> np.ndarray:
    return np.stack([load_for_model(p, card.resize_size, card.input_size) for p in paths])


def cpu_figures() -> str:
    """The CPU recipe's 512-d row of bench/results/cars_finetune.md, to print beside the GPU's."""
    if not CPU_RESULTS.exists():
        return ""
    rows = [line for line in CPU_RESULTS.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    header = rows[0] if rows else ""
    best = [line for line in rows if line.startswith("| NormSoftmax fine-tuned | 512 |")]
    untrained = [line for line in rows if line.startswith("| untrained")]
    return "\n".join([header, "|---|" + "---:|" * (header.count("|") - 2), *untrained, *best]) if best else ""


# -- data -------------------------------------------------------------------------------------------------------


def smoke_folder(root: Path) -> Path:
    """8 classes x 6 pictures, each class a colour cast over random blobs: enough to run every step."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:80, 0:96].astype(np.float32)
    for c in range(8):
        tint = np.eye(3, dtype=np.float32)[c % 3] * (0.25 if c < 3 else -0.2 if c < 6 else 0.1)
        for i in range(6):
            img = np.zeros((80, 96, 3), np.float32)
            for ch in range(3):
                cx, cy, r = rng.uniform(0, 96), rng.uniform(0, 80), rng.uniform(8, 25)
                img[..., ch] = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
            pixels = (255 * np.clip(0.7 * img + 0.15 + tint, 0, 1)).astype(np.uint8)
            path = root / f"class_{c}" / f"{i:02d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path, quality=90)
    return root


STEPS = ("tests", "throughput", "half", "all", "variant")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "cars98")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "runs" / "gpu_run")))
    p.add_argument("--work", type=Path, default=Path("/tmp/gpu-run"), help="training runs (checkpoints, models)")
    p.add_argument("--smoke", action="store_true", help="every step on generated data on the CPU, in about a minute")
    p.add_argument("--budget", type=float, default=480, help="seconds; later steps are skipped if they would overrun")
    p.add_argument("--steps", default=",".join(STEPS), help=f"which steps to run, of {', '.join(STEPS)}")
    p.add_argument(
        "--report-from",
        type=Path,
        default=None,
        help="judge the embeddings a GPU run saved in this folder (with NMI), write the Markdown report",
    )
    args = p.parse_args()
    if args.report_from is not None:
        return report_from(args.report_from, args.data, args.out)
    steps = set(args.steps.split(","))
    report = Report(args.out)
    device = pick_device("cpu" if args.smoke else "auto")
    data = smoke_folder(args.work / "smoke-data") if args.smoke else args.data
    with report.step("environment") as record:
        record.update(environment(device))
        print(json.dumps(record, indent=1), flush=True)
    if "tests" in steps:
        with report.step("gpu tests") as record:
            gpu_tests(record)
    folder = scan_labelled_folder(data, workers=os.cpu_count() or 4)
    train_set, test = split_by_class(folder)
    paths = [q for q, _ in folder.samples]
    if "throughput" in steps:
        with report.step("embedding throughput") as record:
            embedding_throughput(record, paths, device, args.smoke)
        with report.step("training throughput") as record:
            training_throughput(record, train_set, device, args.smoke)

    config = replace(FULL_RECIPE, device=str(device), num_workers=None)
    if args.smoke:
        config = replace(config, dim=64, epochs=2, crop_size=64, classes_per_batch=4, per_class=3)
    half_seconds = 60.0
    if "half" in steps:
        with report.step("paper schedule, 49 -> 49") as record:
            run = paper_schedule(record, train_set, config, args.work / "classes-49", device)
            half_seconds = run.seconds
            judge(record, run, config, test, device, args.out, "half")

    expected = half_seconds * len(folder.samples) / max(1, len(train_set.samples)) + 30
    if "all" in steps and report.fits("paper schedule, all 98 classes", expected, args.budget):
        with report.step("paper schedule, all 98 classes") as record:
            run = paper_schedule(record, folder, config, args.work / "classes-all", device)
            description = (
                f"NormSoftmax, the paper's schedule ({config.epochs} epochs, whole backbone, 224 px, nested "
                f"{config.dim}-d) on all {len(folder.classes)} classes of cars98 (Stanford Cars-196 classes 1-98), "
                f"trained on {device} by bench/gpu_run.py; weights stored in float16. Judge it on Cars-196 classes "
                "99-196, which it never saw."
            )
            keep_model(record, run, args.out, description, paths[:64])

    if "variant" in steps and report.fits("variant: backbone lr x0.1, 49 -> 49", half_seconds + 40, args.budget):
        with report.step("variant: backbone lr x0.1, 49 -> 49") as record:
            variant = replace(config, backbone_lr_mult=0.1)
            run = paper_schedule(record, train_set, variant, args.work / "classes-49-variant", device)
            judge(record, run, variant, test, device, args.out, "variant", with_untrained=False)
    report.save()
    print(f"\n== done in {report.elapsed():.0f} s; failed steps: {report.failed or 'none'}")
    for name, record in report.steps.items():
        print(f"{name}: {json.dumps(record, default=_plain)[:700]}")
    return 1 if report.failed else 0


def report_from(folder: Path, data: Path, out: Path) -> int:
    """The Markdown report of a GPU run from its saved embeddings, judged here with every metric."""
    train_set, test = split_by_class(scan_labelled_folder(data))
    run_json = json.loads((folder / "gpu_run.json").read_text(encoding="utf-8"))
    gpu = run_json["steps"]["environment"].get("gpu", "cpu")
    sections = []
    untrained = None
    for name, title in (
        ("half", "The paper's schedule on a GPU: cars98, 49 training -> 49 unseen classes"),
        ("variant", "The same with the backbone at a tenth of the learning rate (lr x0.1)"),
    ):
        path = folder / f"emb-{name}.npz"
        if not path.exists():
            continue
        saved = np.load(path)
        meta = json.loads(str(saved["meta"]))
        labels = saved["labels"]
        if len(labels) != len(test.samples) or not np.array_equal(labels, test.labels):
            raise SystemExit(f"{path}: its labels are not those of {data}'s test classes")
        if "untrained" in saved:
            untrained = embedding_metrics(saved["untrained"], labels, [1280])
        assert untrained is not None, "the 49 -> 49 run's file holds the untrained backbone's embeddings"
        after = embedding_metrics(saved["trained"], labels, meta["dims"])
        config = FitConfig(**{**meta["config"], "lr_milestones": tuple(meta["config"]["lr_milestones"])})
        run = Run(name, path, meta["seconds"], meta["losses"], 0)
        text = finetune_report(config, train_set, test, run, untrained, after, meta["dims"], 0.0, title, gpu)
        unfreeze = meta["record"].get("loss_around_unfreeze")
        if unfreeze:
            text += f"\n\nLoss of each step from 5 before to 25 after the backbone unfreezes: {unfreeze}"
        sections.append(text)
    cpu = cpu_figures()
    if cpu:
        sections.append("### The CPU recipe, for comparison (bench/results/cars_finetune.md)\n\n" + cpu)
    sections.append(throughput_text(run_json["steps"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    print("\n\n".join(sections))
    return 0


def throughput_text(steps: dict[str, Any]) -> str:
    lines = ["### Throughput on the GPU (bench/gpu_run.py)", ""]
    embed, train_step = steps.get("embedding throughput", {}), steps.get("training throughput", {})
    if "with_decoding" in embed:
        d, m = embed["with_decoding"], embed["model_alone"]
        lines.append(
            f"- embedding, real JPEGs, decoding included: {d['images_per_s']:.0f} images/s "
            f"(GPU busy {d['gpu_utilisation_pct'] or 0:.0f} %); the model alone: {m['images_per_s']:.0f} "
            f"images/s (GPU busy {m['gpu_utilisation_pct'] or 0:.0f} %), batches of {embed['batch_size']}"
        )
        for precision, a in embed.get("against_cpu_float32", {}).items():
            lines.append(
                f"- {precision} on the GPU against float32 on the CPU: cosine min {a['cosine_min']:.5f}, "
                f"sign bits agreeing {a['sign_bits_agreeing_pct']:.2f} %"
            )
    for batch, t in train_step.items():
        if isinstance(t, dict):
            lines.append(
                f"- training step, whole backbone at {t['crop']} px, {batch}: {t['images_per_s']:.0f} "
                f"images/s, {t['ms_per_step']:.1f} ms/step, GPU busy {t['gpu_utilisation_pct'] or 0:.0f} %, "
                f"peak memory {t['peak_memory_gib'] or 0:.1f} GiB"
            )
    for name, t in steps.items():
        if name.startswith(("paper", "variant")) and "images_per_s" in t:
            lines.append(
                f"- {name}, end to end (data loading included): {t['images_per_s']:.0f} images/s, "
                f"GPU busy {t['gpu_utilisation_pct'] or 0:.0f} %, {t['train_minutes']:.2f} min of training"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
