"""Does fine-tuning with the defaults help on the small folders people have? 9 folders, both protocols, the CPU.

Each folder is cut from ../shared/datasets (symbolic links under runs/, nothing copied into the project): 4 to 20
classes, 20 to 60 images per class, fine-grained (birds, cars) and generic (clothing, Caltech objects). Classes
come from the datasets' test halves wherever the bundled model has a test half (it trained on the other half,
and on all of cars98 and flowers51: the folders from those say so). Each folder is fine-tuned from the bundled
model exactly as the wizard and `trainer fit` do with no settings changed:

* *new classes* (`--split classes`): the second half of the sorted classes held out, never seen in training;
* *my classes* (`--split images`): 20 % of every class's images held out, the model trains on the rest;

the default recipe for the training part (trainer/recipe.py), the epoch kept chosen on a further part set aside
from the training data (trainer.folders.carve_validation), never on the held-out part. It prints, per folder and
protocol, Recall@1 (float and binary, full width) of the starting and of the kept model on the held-out part,
the epoch kept, the minutes taken and the wizard's estimate for the same run.

    .venv/bin/python bench/finetune_small.py          # about 15 min on 2 cores; finished runs are not redone
    .venv/bin/python bench/finetune_small.py --table  # the table again from the saved results
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from trainer.data import scan_labelled_folder
from trainer.devices import pick_device
from trainer.epoch_choice import run_parts
from trainer.estimate import RunShape, estimate_seconds, stage_seconds
from trainer.fit import fit
from trainer.folders import carve_validation, split
from trainer.recipe import FolderShape, default_recipe

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
WORK = ROOT / "runs" / "bench" / "finetune_small"
RESULTS = ROOT / "bench" / "results" / "finetune_small.md"
BUNDLED = ROOT / "resources" / "models" / "default"
SPLIT_SEED = 0
"""--split-seed: which images (my classes) or classes (new classes) are held out; 0 = the default split."""


def results_dir() -> Path:
    return WORK / ("results" if SPLIT_SEED == 0 else f"results-seed{SPLIT_SEED}")


def model_name(spec_name: str, protocol: str) -> str:
    return f"{spec_name}-{protocol}" + (f"-seed{SPLIT_SEED}" if SPLIT_SEED else "")


@dataclass(frozen=True)
class SmallFolder:
    name: str
    dataset: str
    first_class: int  # index into the dataset's sorted class names
    classes: int
    per_class: int
    kind: str
    note: str = ""


FOLDERS = [
    SmallFolder("clothing6", "clothing10", 0, 6, 40, "generic", "the issue's folder; 5 classes trained bundled"),
    SmallFolder("clothing5", "clothing10", 5, 5, 50, "generic"),
    SmallFolder("cub4", "cub100", 50, 4, 40, "fine-grained"),
    SmallFolder("cub8", "cub100", 58, 8, 30, "fine-grained"),
    SmallFolder("cub20", "cub100", 70, 20, 20, "fine-grained"),
    SmallFolder("caltech6", "caltech101", 60, 6, 30, "generic"),
    SmallFolder("caltech12", "caltech101", 70, 12, 25, "generic"),
    SmallFolder("cars8", "cars98", 10, 8, 30, "fine-grained", "cars98 trained the bundled model"),
    SmallFolder("birds+flowers10", "cub100+flowers51", 80, 10, 55, "mixed", "flowers51 trained the bundled model"),
]  # fmt: skip


def build(spec: SmallFolder) -> Path:
    """The folder as symbolic links to the dataset's images (the first `per_class` of each class, sorted)."""
    root = WORK / "data" / spec.name
    sources = []
    for i, dataset in enumerate(spec.dataset.split("+")):
        names = sorted(p.name for p in (DATASETS / dataset).iterdir() if p.is_dir())
        share = spec.classes // len(spec.dataset.split("+"))
        start = spec.first_class if i == 0 else 10
        sources += [DATASETS / dataset / n for n in names[start : start + share]]
    for source in sources:
        target = root / source.name
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted(source.iterdir())[: spec.per_class]:
            link = target / image.name
            if not link.exists():
                link.symlink_to(image)
    return root


def run_one(spec: SmallFolder, protocol: str, per_stage: list[float]) -> dict[str, Any]:
    """One fine-tuning as the wizard runs it; the result is saved, and found again by the next invocation."""
    record_path = results_dir() / f"{spec.name}-{protocol}.json"
    if record_path.exists():
        return dict(json.loads(record_path.read_text()))
    folder = scan_labelled_folder(build(spec), follow_outside=True)
    train, held = split(folder, protocol, SPLIT_SEED or None)
    assert held is not None
    fitted, chooser = carve_validation(train, protocol)
    config = default_recipe(FolderShape.of(fitted), "cpu")
    parts = run_parts(fitted, chooser, config)
    shape = RunShape.of(parts, held, continuing=True)
    print(f"{spec.name} / {protocol}: {len(parts.train.samples)} train, {parts.text()}, "
          f"{len(held.samples)} held out; {config.epochs} epochs of {config.classes_per_batch}x{config.per_class}",
          flush=True)  # fmt: skip
    out = WORK / "models" / model_name(spec.name, protocol)
    for stale in (out, out.with_name(out.name + ".run")):  # a finished run there would be resumed, not timed
        shutil.rmtree(stale, ignore_errors=True)
    started = time.perf_counter()
    result = fit(fitted, out, config, base=BUNDLED, validation=held,
                 selection=chooser)  # fmt: skip
    seconds = time.perf_counter() - started
    record = {
        "folder": asdict(spec), "protocol": protocol, "seconds": seconds, "config": asdict(config),
        "shape": asdict(shape), "history": result.history, "kept_epoch": result.kept_epoch, "per_stage": per_stage,
    }  # fmt: skip
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1, default=str))
    return record


def against_training(record: dict[str, Any]) -> dict[str, float]:
    """My classes as a person uses them: each held-out image searched for among the training images (the labelled
    collection), Recall@1 float and binary of the starting and the kept model. Computed once, kept in the record."""
    if "against_training" in record or record["protocol"] != "images":
        return dict(record.get("against_training", {}))
    from trainer.evaluation import embed_folder
    from trainer.metrics import query_gallery_metrics
    from trainer.model import load_model

    spec = SmallFolder(**record["folder"])
    folder = scan_labelled_folder(build(spec), follow_outside=True)
    train, held = split(folder, "images", SPLIT_SEED or None)
    assert held is not None
    out = {}
    for label, path in (("start", BUNDLED), ("kept", WORK / "models" / model_name(spec.name, "images"))):
        model = load_model(path)
        _, q_labels, q = embed_folder(model, held, "cpu")
        _, g_labels, g = embed_folder(model, train, "cpu")
        found = query_gallery_metrics(q, q_labels, g, g_labels)
        out[f"{label} R@1"], out[f"{label} binary R@1"] = found["R@1"], found["binary R@1"]
    record["against_training"] = out
    path = results_dir() / f"{spec.name}-images.json"
    path.write_text(json.dumps(record, indent=1, default=str))
    return out


def row(record: dict[str, Any]) -> tuple[list[str], float]:
    history = record["history"]
    start = history[0]
    kept = next(h for h in history if h["epoch"] == (record["kept_epoch"] if record["kept_epoch"] is not None else -1))
    shape = RunShape(**record["shape"])
    config = record["config"]
    stages = record["per_stage"]  # the stage times at 160 px, then at the input size
    at_input = stages[len(stages) // 2 :]
    at_crop = stages[: len(stages) // 2] if config["crop_size"] else at_input
    estimate = estimate_seconds(shape, config, at_crop, at_input)
    gain = 100 * (kept["R@1"] - start["R@1"])
    spec = record["folder"]
    vs_train = against_training(record)
    gallery = (
        f"{100 * vs_train['start R@1']:.1f} → {100 * vs_train['kept R@1']:.1f} "
        f"({100 * vs_train['start binary R@1']:.1f} → {100 * vs_train['kept binary R@1']:.1f})"
        if vs_train
        else ""
    )
    cells = [
        spec["name"], spec["kind"], "my classes" if record["protocol"] == "images" else "new classes",
        f"{spec['classes']} x {spec['per_class']}", f"{100 * start['R@1']:.1f}", f"{100 * kept['R@1']:.1f}",
        f"{gain:+.1f}", f"{100 * start['binary R@1']:.1f}", f"{100 * kept['binary R@1']:.1f}",
        f"{record['kept_epoch']} of {config['epochs']}", f"{record['seconds'] / 60:.1f}", f"{estimate / 60:.1f}",
        f"{100 * (estimate / record['seconds'] - 1):+.0f} %", gallery,
    ]  # fmt: skip
    return cells, gain


def table(records: list[dict[str, Any]]) -> str:
    header = ["folder", "kind", "protocol", "classes x images", "start R@1", "kept R@1", "gain", "start bin R@1",
              "kept bin R@1", "epoch kept", "minutes", "estimate", "estimate off",
              "my classes, held-out vs training images: R@1 start → kept (binary)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 4 + "---:|" * (len(header) - 4)]
    gains: dict[str, list[float]] = {"images": [], "classes": []}
    for record in records:
        cells, gain = row(record)
        gains[record["protocol"]].append(gain)
        lines.append("| " + " | ".join(cells) + " |")
    summary = []
    for protocol, name in (("images", "my classes"), ("classes", "new classes")):
        if gains[protocol]:
            g = gains[protocol]
            summary.append(f"{name}: median gain {statistics.median(g):+.1f}, worst {min(g):+.1f}, best {max(g):+.1f} "
                           f"Recall@1 points over {len(g)} folders")  # fmt: skip
    vs = [against_training(r) for r in records if r["protocol"] == "images"]
    vs = [v for v in vs if v]
    if vs:
        g = [100 * (v["kept R@1"] - v["start R@1"]) for v in vs]
        b = [100 * (v["kept binary R@1"] - v["start binary R@1"]) for v in vs]
        summary.append(
            f"my classes, held-out images searched among the training images: median gain "
            f"{statistics.median(g):+.1f} (worst {min(g):+.1f}), binary median {statistics.median(b):+.1f} "
            f"(worst {min(b):+.1f})"
        )
    notes = [f"- {s['name']}: {s['note']}" for s in (asdict(f) for f in FOLDERS) if s["note"]]
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {s}" for s in summary) + "\n\nNotes:\n" + "\n".join(notes)


def estimate_check(spec: SmallFolder, protocol: str, epochs: list[int]) -> str:
    """The wizard's estimate against the measured run for a few epoch counts (one folder, fresh stage times)."""
    folder = scan_labelled_folder(build(spec), follow_outside=True)
    train, held = split(folder, protocol)
    fitted, chooser = carve_validation(train, protocol)
    eval_stages = stage_seconds("efficientnet_lite0", 224, "cpu")
    lines = ["| folder | protocol | epochs | measured | estimate | off |", "|---|---|---:|---:|---:|---:|"]
    for n in epochs:
        config = default_recipe(FolderShape.of(fitted), "cpu", epochs=n, **({"warmup_epochs": 0} if n == 1 else {}))
        train_stages = stage_seconds("efficientnet_lite0", config.crop_size, "cpu") if config.crop_size else eval_stages
        shape = RunShape.of(run_parts(fitted, chooser, config), held, continuing=True)
        estimate = estimate_seconds(shape, config, train_stages, eval_stages)
        started = time.perf_counter()
        fit(fitted, WORK / "estimate" / f"{spec.name}-{protocol}-{n}-{time.time():.0f}", config, base=BUNDLED,
            validation=held, selection=chooser)  # fmt: skip
        seconds = time.perf_counter() - started
        lines.append(f"| {spec.name} | {protocol} | {n} | {seconds:.0f} s | {estimate:.0f} s | "
                     f"{100 * (estimate / seconds - 1):+.0f} % |")  # fmt: skip
        print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", action="store_true", help="only print the table of the runs already done")
    p.add_argument("--only", default=None, help="comma-separated folder names")
    p.add_argument("--estimate-check", action="store_true", help="clothing6, 1 and 10 epochs: estimate vs measured")
    p.add_argument("--split-seed", type=int, default=0, help="another held-out split (results kept apart)")
    p.add_argument("--protocols", default="classes,images", help="comma-separated: classes, images")
    args = p.parse_args()
    global SPLIT_SEED
    SPLIT_SEED = args.split_seed
    if not DATASETS.is_dir():
        print(f"skipped: {DATASETS} is absent (see ../shared/datasets/README.md)", file=sys.stderr)
        return 0
    if args.estimate_check:
        text = estimate_check(FOLDERS[0], "images", [1, 10])
        out = RESULTS.with_name("finetune_estimate.md")
        out.write_text("## The wizard's time estimate against measured runs (CPU)\n\n" + text + "\n", encoding="utf-8")
        return 0
    folders = [f for f in FOLDERS if args.only is None or f.name in args.only.split(",")]
    records = []
    per_stage = stage_seconds("efficientnet_lite0", 160, "cpu") if not args.table else []
    stage_full = stage_seconds("efficientnet_lite0", 224, "cpu") if not args.table else []
    print(f"stage seconds at 160 px: {sum(per_stage):.4f}, at 224 px: {sum(stage_full):.4f} per image", flush=True)
    for spec in folders:
        for protocol in args.protocols.split(","):
            path = results_dir() / f"{spec.name}-{protocol}.json"
            if args.table and not path.exists():
                continue
            records.append(run_one(spec, protocol, per_stage + stage_full))
            print("  " + " | ".join(row(records[-1])[0]), flush=True)
    text = (
        "## Fine-tuning small folders with the defaults (bench/finetune_small.py)\n\n"
        f"From the bundled model, the default recipe on the CPU ({torch.get_num_threads()} threads, "
        f"{pick_device('cpu')}); Recall@1 on the held-out part at full width (1280-d), float and binary; the kept "
        "epoch is chosen on training images only (with the backbone frozen, on 5 folds of them; else on a part set "
        "aside), never on the held-out part (0 = the starting model kept). Estimate: the wizard's, from this "
        f"machine's measured stage times. Split seed {SPLIT_SEED}.\n\n" + table(records) + "\n"
    )
    print(text)
    if not args.only and args.protocols == "classes,images":
        out = RESULTS if SPLIT_SEED == 0 else RESULTS.with_name(f"finetune_small_seed{SPLIT_SEED}.md")
        out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
