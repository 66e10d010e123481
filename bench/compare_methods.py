"""The training methods side by side on cars98: same backbone, same batches, same epochs, same image budget.

    .venv/bin/python bench/compare_methods.py                       # the short CPU schedule (~25 min here)
    .venv/bin/python bench/compare_methods.py --full --device cuda  # whole backbone at 224 px, 30 epochs
    .venv/bin/python bench/compare_methods.py --methods normsoftmax,triplet --epochs 8

One table: the untrained ImageNet backbone first (the floor every method must clear), then each method's
Recall@1/2/4/8 and NMI, float (cosine) and binary (Hamming on the sign bits), at the full dimension. Every
method trains with the same class-balanced sampler (C = 25 classes x S = 3 images, the NormSoftmax recipe; a
pair-based loss needs S >= 2 and gets it), the same schedule, the same backbone learning rate and the same
nested objective structure; the only per-method setting is the learning rate of the new layers (`--lr-for`,
default: the schedule's lr for every method). Pair losses may want another one: the embeddings have a norm near
30 (LayerNorm'd 1280-d features through a PCA rotation), so a loss on L2-normalised embeddings sends gradients
about 30x smaller than at unit norm; NormSoftmax's 1/0.05 temperature makes up for that, triplet and
multi-similarity losses have no such factor.

Two control rows follow the untrained backbone: the starting point of every run (PCA-initialised embedding
layer, 0 epochs) and a run at learning rate 0, in which nothing but the BatchNorm running statistics of the
trainable stages can change: the difference between them is what batch-statistics drift alone does to
retrieval, which every trained row carries too.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import _cars_protocol as cp

from trainer.methods import METHODS

RESULTS = cp.ROOT / "bench" / "results" / "compare_methods.md"
DEFAULT_METHODS = "normsoftmax,triplet,multisimilarity,multisimilarity-das,intra-batch"
METRICS = ("R@1", "R@2", "R@4", "R@8", "NMI")


def _lr_overrides(text: str) -> dict[str, float]:
    out = {}
    for item in text.split(","):
        if item.strip():
            name, value = item.split("=")
            out[name.strip()] = float(value)
            if not out[name.strip()] > 0:
                raise SystemExit(f"--lr-for {item}: the learning rate must be positive")
    return out


def _cells(metrics: cp.Metrics, dim: int) -> list[str]:
    return [cp.pct(metrics[rep][dim][name]) for rep in ("float", "binary") for name in METRICS]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cp.add_schedule_arguments(p)
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated, from: {', '.join(METHODS)}")
    p.add_argument("--dim", type=int, default=None, help="embedding dimension (default: the schedule's)")
    p.add_argument("--no-nested", action="store_true", help="train the full dimension only")
    p.add_argument("--classes-per-batch", type=int, default=25)
    p.add_argument("--per-class", type=int, default=3)
    p.add_argument("--lr-for", default="", help="per-method lr of the new layers, e.g. triplet=0.003,...")
    p.add_argument("--out", type=Path, default=RESULTS, help="Markdown file to write")
    args = p.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(METHODS)}")
    if not cp.cars_available():
        return 0
    schedule = cp.schedule_from_args(args)
    if args.dim:
        schedule = replace(schedule, dim=args.dim)
    lrs = _lr_overrides(args.lr_for)
    started = time.perf_counter()
    print(f"schedule: {schedule.describe()}", flush=True)
    train_set, test_set = cp.cars_split()
    test = cp.FrozenTestSet.build(test_set, schedule)
    print(f"test maps: {len(test.labels)} images, {test.seconds:.0f} s", flush=True)

    base = cp.untrained_model()
    width = base.card.dim
    rows = [
        [
            "untrained backbone (ImageNet + LayerNorm)",
            str(width),
            "",
            *_cells(test.evaluate(base, [width], True), width),
            "",
            "",
        ]
    ]
    d = schedule.dim
    start = cp.train(train_set, "pca-start", schedule.config(epochs=0), args.work)
    rows.append(
        [
            "+ PCA-initialised embedding layer (0 epochs)",
            str(d),
            "",
            *_cells(test.evaluate(cp.load(start), [d], True), d),
            "",
            "",
        ]
    )
    control = cp.train(train_set, "lr0-control", replace(schedule, lr=0.0).config(), args.work)
    rows.append(
        [
            "+ training at lr 0 (control: nothing may change)",
            str(d),
            "0",
            *_cells(test.evaluate(cp.load(control), [d], True), d),
            "",
            f"{control.seconds:.0f}",
        ]
    )
    for row in rows:
        print(" | ".join(row), flush=True)
    notes = []
    for method in methods:
        lr = lrs.get(method)
        config = schedule.config(
            method, classes_per_batch=args.classes_per_batch, per_class=args.per_class, nested=not args.no_nested, lr=lr
        )
        lr = config.lr
        run = cp.train(train_set, method, config, args.work)
        metrics = test.evaluate(cp.load(run), [d], clustering=True)
        loss = f"{run.losses[0]:.3f} → {run.losses[-1]:.3f}" if run.losses else ""
        rows.append([method, str(d), f"{lr:g}", *_cells(metrics, d), loss, f"{run.seconds:.0f}"])
        if run.skipped_steps:
            notes.append(f"{method}: {run.skipped_steps} steps skipped for a non-finite loss or gradient.")
        print(" | ".join(rows[-1]), flush=True)

    header = [
        "method",
        "dim",
        "lr",
        *(f"{rep} {n}" for rep in ("float", "binary") for n in METRICS),
        "loss (epoch 1 → last)",
        "train s",
    ]
    config = schedule.config(classes_per_batch=args.classes_per_batch, per_class=args.per_class)
    images = config.epochs * (config.batches_per_epoch or 0) * args.classes_per_batch * args.per_class
    total = time.perf_counter() - started
    text = "\n\n".join(
        [
            "## Training methods compared on cars98",
            f"Data: cars98 split by class, training on the first {len(train_set.classes)} classes "
            f"({len(train_set.samples)} images), Recall@K on the other {len(set(test.labels.tolist()))} "
            f"({len(test.labels)} images, each a query against all others). NMI: spherical k-means with k = number "
            "of test classes (on the sign vectors for binary).",
            f"Schedule: {schedule.describe()}. Batches of {args.classes_per_batch} classes x {args.per_class} images; "
            f"every method sees the same {images:,} training images; "
            f"{'full dimension only' if args.no_nested else 'nested objective (every prefix 64, 128, ... trained)'}; "
            f"'lr' is the new layers' learning rate; the backbone's is {schedule.lr * schedule.backbone_lr_mult:g} for "
            f"every method. The untrained row is at its full width ({width}); "
            "every other row at the trained dimension.",
            cp.markdown_table(header, rows),
            "\n".join(f"- {n}" for n in notes),
            f"Wall time of this invocation {total / 60:.1f} min on {cp.machine_note()} (test maps "
            f"{test.seconds:.0f} s); runs already trained with identical settings are reused, and 'train s' is each "
            "run's own training time, measured when it ran (the machine's load varies, so compare them loosely).",
        ]
    )
    text = text.replace("\n\n\n\n", "\n\n") + "\n"
    cp.write_report(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
