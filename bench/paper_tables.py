"""Two results of Zhai & Wu (BMVC 2019) re-measured on cars98 with this project's trainer, as Markdown tables.

    .venv/bin/python bench/paper_tables.py                  # the short CPU schedule (~25 min on 2 loaded cores)
    .venv/bin/python bench/paper_tables.py --full --device cuda --dims 64,128,256,512,1024 \\
        --separate-dims 64,128,256,512,1024

(a) The paper's Table 4: Recall@1 (float and binary, at the full dimension) against the number of samples per
    class S in a batch of 75 (C = 75 / S classes). cars98's training half has only 49 classes, so S = 1 cannot
    fill a batch of 75 with distinct classes: that row uses C = 49 (a batch of 49) and says so.
(b) The paper's dimension figure: Recall@1 against the embedding dimension. This project trains every nested
    prefix (64, 128, ... D) at once, one proxy matrix per prefix, so one model gives every row; separately
    trained single-dimension models (the paper's setting) answer what nesting costs at full D.

Every run shares the data split, the frozen trunk and the image budget (images seen per epoch), so rows
differ only in what the table varies. One seed per row: on 2,057 test images the test sample alone gives a
Recall@1 near 40% a standard error of about 1.1 points, and the training seed adds to that, so differences
below about 3 points are not evidence of anything.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _cars_protocol as cp

from trainer.card import nested_dims
from trainer.data import LabelledFolder

RESULTS = cp.ROOT / "bench" / "results" / "paper_tables.md"
BATCH = 75


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def table4(args: argparse.Namespace, schedule: cp.Schedule, train_set: LabelledFolder, test: cp.FrozenTestSet) -> str:
    """Recall@1 against samples per class S at a fixed batch size (and image budget)."""
    num_classes = len(train_set.classes)
    rows, notes = [], []
    for s in _ints(args.samples_per_class):
        c = max(1, BATCH // s)
        if c > num_classes:
            notes.append(
                f"S = {s}: a batch of {BATCH} would need {c} distinct classes but the training half has "
                f"{num_classes}; this row uses C = {num_classes}, a batch of {num_classes * s}."
            )
            c = num_classes
        config = schedule.config("normsoftmax", classes_per_batch=c, per_class=s)
        run = cp.train(train_set, f"table4-S{s}", config, args.work)
        m = test.evaluate(cp.load(run), dims=[schedule.dim])
        steps = config.epochs * (config.batches_per_epoch or 0)
        rows.append(
            [
                str(s), str(c), str(c * s), f"{steps * c * s:,}",
                cp.pct(m["float"][schedule.dim]["R@1"]), cp.pct(m["binary"][schedule.dim]["R@1"]),
                f"{run.losses[-1]:.3f}" if run.losses else "", f"{run.seconds:.0f}",
            ]
        )  # fmt: skip
        print(f"S={s}: float R@1 {rows[-1][4]}, binary R@1 {rows[-1][5]} ({run.seconds:.0f} s)", flush=True)
    sizes = train_set.counts().values()
    small, large = min(sizes), max(sizes)
    notes.append(
        f"Training classes hold {small}-{large} images; where S exceeds a class's size its images repeat within "
        "the batch (each cached view flipped at random), as the sampler documents."
    )
    header = [
        "S",
        "C",
        "batch",
        "images seen",
        "float R@1",
        "binary R@1",
        f"last loss (sum of {len(nested_dims(schedule.dim))} prefixes)",
        "train s",
    ]
    return "\n\n".join(
        [
            f"### (a) Table 4: samples per class (NormSoftmax, nested, D = {schedule.dim}, batch {BATCH})",
            cp.markdown_table(header, rows),
            "\n".join(f"- {n}" for n in notes),
        ]
    )


def dimension_figure(
    args: argparse.Namespace, schedule: cp.Schedule, train_set: LabelledFolder, test: cp.FrozenTestSet
) -> str:
    """Recall@1 against dimension: prefixes of one nested model beside separately trained single-D models.

    The nested model is Table 4's S = 3 run when D = the schedule's dim (same settings, so the same run)."""
    dims = _ints(args.dims)
    top = max(dims)
    nested = cp.train(train_set, f"dims-nested-D{top}", schedule.config("normsoftmax", dim=top), args.work)
    m_nested = test.evaluate(cp.load(nested), dims=dims)
    start = cp.train(train_set, f"dims-start-D{top}", schedule.config("normsoftmax", dim=top, epochs=0), args.work)
    m_start = test.evaluate(cp.load(start), dims=dims)
    separate: dict[int, tuple[cp.Metrics, cp.Run]] = {}
    for d in _ints(args.separate_dims):
        run = cp.train(train_set, f"dims-single-D{d}", schedule.config("normsoftmax", dim=d, nested=False), args.work)
        separate[d] = (test.evaluate(cp.load(run), dims=[d]), run)
        print(f"single D={d}: float R@1 {cp.pct(separate[d][0]['float'][d]['R@1'])} ({run.seconds:.0f} s)", flush=True)
    rows = []
    for d in sorted(set(dims) | set(separate)):
        single = separate.get(d)
        in_nested = d in m_nested["float"]
        rows.append(
            [
                str(d), f"{d // 8}",
                cp.pct(m_start["float"][d]["R@1"]) if in_nested else "",
                cp.pct(m_start["binary"][d]["R@1"]) if in_nested else "",
                cp.pct(m_nested["float"][d]["R@1"]) if in_nested else "",
                cp.pct(m_nested["binary"][d]["R@1"]) if in_nested else "",
                cp.pct(single[0]["float"][d]["R@1"]) if single else "",
                cp.pct(single[0]["binary"][d]["R@1"]) if single else "",
            ]
        )  # fmt: skip
    header = [
        "dim", "binary bytes", "start float", "start binary", f"nested D={top} float", f"nested D={top} binary",
        "single-D float", "single-D binary",
    ]  # fmt: skip
    timing = f"nested model {nested.seconds:.0f} s; " + ", ".join(
        f"single D={d} {run.seconds:.0f} s" for d, (_, run) in separate.items()
    )
    notes = [
        f"'nested D={top}': one model trained on the sum of NormSoftmax losses over every prefix "
        f"({', '.join(map(str, nested_dims(top)))}), one proxy matrix each; row d is its first d coordinates"
        + (" (the S = 3 run of Table 4)." if top == schedule.dim else "."),
        "'single-D': a model trained at that dimension alone (nested=False), the paper's setting; at d = "
        f"{top} it answers what nesting costs at full D.",
        "'start': every run's starting point before any step (ImageNet features, LayerNorm, the embedding layer "
        "initialised as the PCA rotation of the training features): what training adds is the difference.",
        f"Training time: {timing}.",
    ]
    return "\n\n".join(
        [
            "### (b) Recall@1 against embedding dimension (NormSoftmax, C = 25 x S = 3)",
            cp.markdown_table(header, rows),
            "\n".join(f"- {n}" for n in notes),
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cp.add_schedule_arguments(p)
    p.add_argument("--samples-per-class", default="1,3,12,25,37,75", help="Table 4 rows (batch 75)")
    p.add_argument(
        "--dims",
        default="64,128,256,512",
        help="dimension figure rows (the nested model's D is the max; add 1024 if cheap)",
    )
    p.add_argument("--separate-dims", default="64,512", help="dimensions that also get a single-D model")
    p.add_argument("--skip-table4", action="store_true")
    p.add_argument("--skip-dims", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS, help="Markdown file to write")
    args = p.parse_args()
    if not cp.cars_available():
        return 0
    schedule = cp.schedule_from_args(args)
    started = time.perf_counter()
    print(f"schedule: {schedule.describe()}", flush=True)
    train_set, test_set = cp.cars_split()
    test = cp.FrozenTestSet.build(test_set, schedule)
    print(f"test maps: {len(test.labels)} images, {test.seconds:.0f} s", flush=True)
    sections = [
        "## Zhai & Wu (BMVC 2019) on cars98, re-measured",
        f"Data: cars98 split by class, training on the first {len(train_set.classes)} classes "
        f"({len(train_set.samples)} images), Recall@K on the other {len(set(test.labels.tolist()))} "
        f"({len(test.labels)} images, each a query against all others).",
        f"Schedule: {schedule.describe()}.",
    ]
    if not args.skip_table4:
        sections.append(table4(args, schedule, train_set, test))
    if not args.skip_dims:
        sections.append(dimension_figure(args, schedule, train_set, test))
    total = time.perf_counter() - started
    sections.append(
        f"Wall time of this invocation {total / 60:.1f} min on {cp.machine_note()} (test maps {test.seconds:.0f} s); "
        "runs already trained with identical settings are reused, and 'train s' is each run's own training time, "
        "measured when it ran (the machine's load varies, so compare them loosely)."
    )
    text = "\n\n".join(sections) + "\n"
    cp.write_report(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
