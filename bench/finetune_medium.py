"""Where should the backbone start to train? Medium folders on the CPU: the stretch against the backbone recipe.

trainer/recipe.py keeps the backbone as it is and stretches the embedding layer (trainer/class_stretch.py) below
HEAD_ONLY_BELOW_CPU training images on a CPU; above it, the last 6 backbone stages train at 160 px for 6 or more
epochs. This runs both recipes, from the bundled model, on folders whose training part lies between 1,200 and 2,400
images (cut from ../shared/datasets like bench/finetune_small.py's: symbolic links, nothing copied), under both
protocols, and prints held-out Recall@1 (float and binary, full width) of the start and of the kept model, the
minutes taken and the wizard's estimate. The epoch kept is chosen on training images only, as in the wizard.

    .venv/bin/python bench/finetune_medium.py           # about 55 min on 2 cores; finished runs are not redone
    .venv/bin/python bench/finetune_medium.py --table   # the table again from the saved results
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from dataclasses import asdict
from typing import Any

from finetune_small import BUNDLED, DATASETS, ROOT, SmallFolder, build

from trainer.data import scan_labelled_folder
from trainer.epoch_choice import run_parts
from trainer.estimate import RunShape, estimate_seconds, stage_seconds
from trainer.fit import fit
from trainer.folders import carve_validation, split
from trainer.recipe import CPU_STAGES, HEAD_ONLY_BELOW_CPU, FolderShape, default_recipe

WORK = ROOT / "runs" / "bench" / "finetune_medium"
RESULTS = ROOT / "bench" / "results" / "finetune_medium.md"
FOLDERS = [
    SmallFolder("clothing10x200", "clothing10", 0, 10, 200, "generic", "its first 5 classes trained the bundled model"),
    SmallFolder("cub40x55", "cub100", 50, 40, 55, "fine-grained"),
    SmallFolder("cub50x60", "cub100", 50, 50, 60, "fine-grained"),
    SmallFolder("clothing10all", "clothing10", 0, 10, 1000, "generic", "every image; above the limit (2,420 training)"),
]  # fmt: skip
RECIPES = {"stretch": 0, "backbone": CPU_STAGES}
"""The recipe's trainable stages: 0 is the stretch (the default below HEAD_ONLY_BELOW_CPU), 6 the backbone recipe."""


def run_one(spec: SmallFolder, protocol: str, recipe: str, stages: dict[int, list[float]]) -> dict[str, Any]:
    record_path = WORK / "results" / f"{spec.name}-{protocol}-{recipe}.json"
    if record_path.exists():
        return dict(json.loads(record_path.read_text()))
    folder = scan_labelled_folder(build(spec), follow_outside=True)
    train, held = split(folder, protocol)
    assert held is not None
    fitted, chooser = carve_validation(train, protocol)
    config = default_recipe(FolderShape.of(fitted), "cpu", trainable_stages=RECIPES[recipe])
    shape = RunShape.of(run_parts(fitted, chooser, config), held, continuing=True)
    estimate = estimate_seconds(shape, config, stages[config.crop_size or 224], stages[224])
    print(f"{spec.name} / {protocol} / {recipe}: {len(fitted.samples)} training images, {config.epochs} epochs",
          flush=True)  # fmt: skip
    out = WORK / "models" / f"{spec.name}-{protocol}-{recipe}"
    for stale in (out, out.with_name(out.name + ".run")):  # a finished run there would be resumed, not timed
        shutil.rmtree(stale, ignore_errors=True)
    started = time.perf_counter()
    result = fit(fitted, out, config, base=BUNDLED, validation=held, selection=chooser)
    record = {
        "folder": asdict(spec), "protocol": protocol, "recipe": recipe, "seconds": time.perf_counter() - started,
        "estimate": estimate, "training_images": len(fitted.samples), "history": result.history,
        "kept_epoch": result.kept_epoch, "epochs": config.epochs,
    }  # fmt: skip
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1, default=str))
    return record


def row(record: dict[str, Any]) -> list[str]:
    start = record["history"][0]
    kept = next(h for h in record["history"] if h["epoch"] == record["kept_epoch"])
    spec = record["folder"]
    return [
        spec["name"], spec["kind"], "my classes" if record["protocol"] == "images" else "new classes",
        record["recipe"], str(record["training_images"]), f"{100 * start['R@1']:.1f}", f"{100 * kept['R@1']:.1f}",
        f"{100 * start['binary R@1']:.1f}", f"{100 * kept['binary R@1']:.1f}",
        f"{record['kept_epoch']} of {record['epochs']}", f"{record['seconds'] / 60:.1f}",
        f"{record['estimate'] / 60:.1f}", f"{100 * (record['estimate'] / record['seconds'] - 1):+.0f} %",
    ]  # fmt: skip


def table(records: list[dict[str, Any]]) -> str:
    header = ["folder", "kind", "protocol", "recipe", "training images", "start R@1", "kept R@1", "start bin R@1",
              "kept bin R@1", "epoch kept", "minutes", "estimate", "estimate off"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 4 + "---:|" * (len(header) - 4)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in records]
    by_run = {(r["folder"]["name"], r["protocol"], r["recipe"]): r for r in records}
    gains: dict[str, list[float]] = {"float": [], "binary": []}
    for (name, protocol, recipe), record in by_run.items():
        other = by_run.get((name, protocol, "backbone"))
        if recipe != "stretch" or other is None:
            continue
        for kind, key in (("float", "R@1"), ("binary", "binary R@1")):
            mine, theirs = (next(h for h in r["history"] if h["epoch"] == r["kept_epoch"]) for r in (record, other))
            gains[kind].append(100 * (mine[key] - theirs[key]))
    summary = [
        f"the stretch minus the backbone recipe, kept model's held-out {kind} Recall@1: median "
        f"{statistics.median(g):+.1f}, worst {min(g):+.1f}, best {max(g):+.1f} over {len(g)} runs"
        for kind, g in gains.items()
        if g
    ]
    notes = [f"- {s['name']}: {s['note']}" for s in (asdict(f) for f in FOLDERS) if s["note"]]
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {s}" for s in summary) + "\n\nNotes:\n" + "\n".join(notes)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", action="store_true", help="only print the table of the runs already done")
    args = p.parse_args()
    if not DATASETS.is_dir():
        print(f"skipped: {DATASETS} is absent (see ../shared/datasets/README.md)", file=sys.stderr)
        return 0
    stages = {} if args.table else {px: stage_seconds("efficientnet_lite0", px, "cpu") for px in (160, 224)}
    records = []
    for spec in FOLDERS:
        for protocol in ("images", "classes"):
            for recipe in RECIPES:
                path = WORK / "results" / f"{spec.name}-{protocol}-{recipe}.json"
                if args.table and not path.exists():
                    continue
                records.append(run_one(spec, protocol, recipe, stages))
                print("  " + " | ".join(row(records[-1])), flush=True)
    text = (
        "## The stretch against training the backbone, on medium folders (bench/finetune_medium.py)\n\n"
        "From the bundled model on the CPU (2 threads); the default recipe for the training part with its trainable "
        f"stages set: 0, the stretch (the default below {HEAD_ONLY_BELOW_CPU:,} training images on a CPU), or "
        f"{CPU_STAGES}, the backbone recipe (160 px crops, the epoch chosen on a part set aside). Recall@1 on the "
        "held-out part at full width (1280-d), float and binary.\n\n" + table(records) + "\n"
    )
    print(text)
    RESULTS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
