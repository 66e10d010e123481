"""`trainer fit | eval | methods`: fine-tune and judge embedding models from a terminal.

Exit codes: 0 success, 1 unexpected error, 2 bad usage or a folder that cannot train (the reason is printed),
5 the model cannot be loaded, 130 cancelled or interrupted (the checkpoint is kept; run again to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BAD_MODEL, EXIT_INTERRUPTED = 0, 1, 2, 5, 130


def _parse_params(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--param expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def _parser() -> argparse.ArgumentParser:
    from trainer.fit import FitConfig

    d = FitConfig()
    p = argparse.ArgumentParser(prog="trainer", description="Deep metric learning on labelled folders.")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="fine-tune a model on a labelled folder (one sub-folder per class)")
    f.add_argument("data", type=Path)
    f.add_argument("--out", type=Path, required=True, help="model path to write (<out>.safetensors + .json)")
    src = f.add_mutually_exclusive_group()
    src.add_argument("--base", type=Path, help="start from this model (e.g. the bundled one)")
    src.add_argument("--backbone", default="efficientnet_lite0", help="start from ImageNet weights of this backbone")
    f.add_argument("--backbone-weights", type=Path, help="ImageNet weights file (needed for resnet50)")
    f.add_argument("--method", default=d.method, help="training method (see: trainer methods)")
    f.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="method hyperparameter")
    f.add_argument("--dim", type=int, default=None, help="embedding dimension (default: base model's)")
    f.add_argument("--no-nested", action="store_true", help="train the full dimension only")
    f.add_argument("--epochs", type=int, default=d.epochs)
    f.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs)
    f.add_argument("--classes-per-batch", type=int, default=d.classes_per_batch)
    f.add_argument("--per-class", type=int, default=d.per_class)
    f.add_argument("--batches-per-epoch", type=int, default=None)
    f.add_argument("--lr", type=float, default=d.lr)
    f.add_argument("--backbone-lr-mult", type=float, default=d.backbone_lr_mult)
    f.add_argument("--trainable-stages", type=int, default=None, help="train only the last N backbone stages")
    f.add_argument("--cache-trunk", action="store_true", help="compute the frozen stages once (CPU recipe)")
    f.add_argument("--cache-views", type=int, default=d.cache_views)
    f.add_argument("--crop-size", type=int, default=None, help="training resolution (default: model input)")
    f.add_argument(
        "--update-batchnorm", action="store_true", help="re-estimate the backbone's batch-norm statistics in training"
    )
    f.add_argument(
        "--split",
        choices=["class", "none"],
        default="class",
        help="class: first half of the sorted classes trains, the rest validates; none: all train",
    )
    f.add_argument("--split-seed", type=int, default=None, help="shuffle classes with this seed before halving")
    f.add_argument("--test-dir", type=Path, default=None, help="explicit held-out folder (implies --split none)")
    f.add_argument("--seed", type=int, default=d.seed)
    f.add_argument("--device", default="auto")
    f.add_argument("--workers", type=int, default=d.num_workers)
    f.add_argument("--quiet", action="store_true")

    e = sub.add_parser("eval", help="retrieval metrics of a model on a labelled folder")
    e.add_argument("model", type=Path)
    e.add_argument("data", type=Path)
    e.add_argument("--split", choices=["test", "all"], default="test")
    e.add_argument("--dims", default=None, help="comma-separated dimensions (default: the card's nested dims)")
    e.add_argument("--max-images", type=int, default=None)
    e.add_argument("--no-clustering", action="store_true", help="skip NMI and F1")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true")

    sub.add_parser("methods", help="list the training methods and their hyperparameters")
    return p


def cmd_fit(args: argparse.Namespace) -> int:
    from trainer.data import DatasetError, require_trainable, scan_labelled_folder, split_by_class
    from trainer.fit import FitCallbacks, FitConfig, fit
    from trainer.progress import Progress, format_progress

    try:
        folder = scan_labelled_folder(args.data)
        for s in folder.skipped:
            print(f"trainer: skipped {s.path}: {s.reason}", file=sys.stderr)
        require_trainable(folder)  # the folder's own problems first, before any split can hide them
        if args.test_dir is not None:
            train, val = folder, scan_labelled_folder(args.test_dir)
        elif args.split == "class":
            train, val = split_by_class(folder, args.split_seed)
        else:
            train, val = folder, None
        require_trainable(train)
    except DatasetError as exc:
        print(f"trainer: cannot train on {args.data}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = FitConfig(
        method=args.method, method_params=_parse_params(args.param), dim=args.dim, nested=not args.no_nested,
        epochs=args.epochs, warmup_epochs=args.warmup_epochs, classes_per_batch=args.classes_per_batch,
        per_class=args.per_class, batches_per_epoch=args.batches_per_epoch, lr=args.lr,
        backbone_lr_mult=args.backbone_lr_mult, trainable_stages=args.trainable_stages,
        cache_trunk=args.cache_trunk, cache_views=args.cache_views, crop_size=args.crop_size, seed=args.seed,
        freeze_batchnorm=not args.update_batchnorm,
        device=args.device, num_workers=args.workers,
    )  # fmt: skip
    quiet = args.quiet

    def progress(p: Progress) -> None:
        if not quiet and sys.stderr.isatty():
            print("\r" + format_progress(p), end="", file=sys.stderr, flush=True)

    def epoch(e: int, m: dict[str, float]) -> None:
        shown = "  ".join(f"{k}={v:.4f}" for k, v in m.items() if k != "epoch")
        print(f"\nepoch {e}/{config.epochs}: {shown}", file=sys.stderr, flush=True)

    callbacks = FitCallbacks(
        on_epoch=epoch, on_progress=progress, on_message=lambda t: print(f"trainer: {t}", file=sys.stderr)
    )
    result = fit(
        train, args.out, config, base=args.base, backbone=args.backbone, validation=val, callbacks=callbacks,
        backbone_weights=args.backbone_weights,
    )  # fmt: skip
    print(f"wrote {result.model_path} ({len(result.history)} epochs, {result.card.dim}-d, method {args.method})")
    if result.history:
        print(json.dumps(result.history[-1]))
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from trainer.data import DatasetError, scan_labelled_folder
    from trainer.evaluation import evaluate_model, metrics_table, select_split
    from trainer.model import ModelFileError, load_model

    try:
        model = load_model(args.model)
    except ModelFileError as exc:
        print(f"trainer: cannot load model: {exc}", file=sys.stderr)
        return EXIT_BAD_MODEL
    try:
        folder = select_split(scan_labelled_folder(args.data), args.split)
    except DatasetError as exc:
        print(f"trainer: cannot evaluate on {args.data}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if len(folder.classes) < 2:
        print(f"trainer: {args.data} needs at least two classes to evaluate retrieval", file=sys.stderr)
        return EXIT_USAGE
    dims = [int(x) for x in args.dims.split(",")] if args.dims else None
    metrics = evaluate_model(
        model, folder, dims, args.device, with_clustering=not args.no_clustering, max_images=args.max_images
    )
    if args.json:
        print(json.dumps({rep: {str(d): v for d, v in per.items()} for rep, per in metrics.items()}, indent=2))
    else:
        size = f"{len(folder.classes)} classes, {len(folder.samples)} images"
        title = f"{model.card.name} on {args.data} ({args.split}: {size})"
        print(metrics_table(metrics, title))
    return EXIT_OK


def cmd_methods(_args: argparse.Namespace) -> int:
    from trainer.methods import METHODS

    for spec in METHODS.values():
        params = ", ".join(f"{k}={v}" for k, v in spec.defaults.items())
        print(f"{spec.name:22s} {spec.summary}")
        if params:
            print(f"{'':22s}   {params}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from trainer.progress import Cancelled

    commands = {"fit": cmd_fit, "eval": cmd_eval, "methods": cmd_methods}
    try:
        return commands[args.command](args)
    except (Cancelled, KeyboardInterrupt):
        print(
            "\ntrainer: stopped; the checkpoint is kept, run the same command again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except ValueError as exc:
        print(f"trainer: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
