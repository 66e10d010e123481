"""`trainer fit | eval | methods`: fine-tune and judge embedding models from a terminal.

Exit codes: 0 success, 1 unexpected error, 2 bad usage or a folder that cannot train (the reason is printed),
5 the model cannot be loaded, 130 cancelled or interrupted (the checkpoint is kept; run again to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from trainer.paths import BUNDLED_MODEL

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
    from trainer.folders import PROTOCOLS
    from trainer.recipe import (
        CHOICE_FOLDS,
        CPU_CROP,
        CPU_STAGES,
        HEAD_LR,
        HEAD_ONLY_BELOW,
        HEAD_ONLY_BELOW_CPU,
        HEAD_PROXY_LR_MULT,
        STRETCH_FACTOR,
    )  # fmt: skip

    p = argparse.ArgumentParser(prog="trainer", description="Deep metric learning on labelled folders.")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser(
        "fit",
        help="fine-tune a model on a labelled folder (one sub-folder per class)",
        description="Fine-tune on a labelled folder. Settings left out come from the folder's default recipe "
        "(trainer/recipe.py, the same as the fine-tune wizard's), printed before training starts.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    f.add_argument("data", type=Path)
    f.add_argument("--out", type=Path, required=True, help="model path to write (<out>.safetensors + .json)")
    src = f.add_mutually_exclusive_group()
    src.add_argument("--base", type=Path, help="start from this model (default: the bundled one)")
    src.add_argument("--backbone", default=None, help="start from ImageNet weights of this backbone instead")
    f.add_argument("--backbone-weights", type=Path, help="ImageNet weights file (needed for resnet50)")
    f.add_argument("--method", default="normsoftmax", help="training method (see: trainer methods)")
    f.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="method hyperparameter")
    f.add_argument("--dim", type=int, default=None, help="embedding dimension (default: the starting model's)")
    f.add_argument("--no-nested", action="store_true", help="train the full dimension only")
    recipe = "from the folder: "
    f.add_argument("--epochs", type=int, default=None,
                   help=recipe + "1 when the backbone stays as it is and the embedding layer is stretched (more "
                   "asks for SGD steps: then passes to make ~150 steps); else to see ~2,400 images on a CPU, "
                   "~60,000 on a GPU, 6 to 30; one epoch = one pass over the training images")  # fmt: skip
    f.add_argument("--stretch", type=float, default=None,
                   help="when the backbone stays as it is (NormSoftmax): stretch the embedding layer "
                   f"{STRETCH_FACTOR:g}x along the directions that separate the classes' proxies, in one pass; "
                   "0: train it by SGD steps instead")  # fmt: skip
    f.add_argument("--warmup-epochs", type=int, default=None,
                   help="1 (0 when the backbone stays): the first epoch trains only the new layers")  # fmt: skip
    f.add_argument("--classes-per-batch", type=int, default=None, help=recipe + "min(25, classes)")
    f.add_argument("--per-class", type=int, default=None, help=recipe + "3 to 8, about 24 images a batch")
    f.add_argument("--batches-per-epoch", type=int, default=None, help="steps per epoch (default: one pass)")
    f.add_argument("--lr", type=float, default=None,
                   help=f"the new layers: {HEAD_LR:g} when the backbone stays as it is, else 0.01")  # fmt: skip
    f.add_argument("--backbone-lr-mult", type=float, default=None, help="0.1: the backbone's lr is lr x this")
    f.add_argument("--proxy-lr-mult", type=float, default=None,
                   help=f"the proxies' lr is lr x this: {HEAD_PROXY_LR_MULT:g} when the backbone stays as it is, "
                   "else 1")  # fmt: skip
    f.add_argument("--choice-folds", type=int, default=None,
                   help=f"when the backbone stays as it is, the images set aside train too and this many folds of "
                   f"the training images choose the epoch ({CHOICE_FOLDS}; 0: the part set aside chooses)")  # fmt: skip
    f.add_argument("--trainable-stages", type=int, default=None,
                   help=f"train only the last N backbone stages; 0: none, only the embedding layer and the "
                   f"proxies (the default below {HEAD_ONLY_BELOW_CPU:,} training images on a CPU, "
                   f"{HEAD_ONLY_BELOW:,} on a GPU); else {CPU_STAGES} on a CPU, all on a GPU")  # fmt: skip
    f.add_argument("--cache-trunk", action="store_true", default=None,
                   help="compute the frozen stages once (the default when none train)")  # fmt: skip
    f.add_argument("--cache-views", type=int, default=None,
                   help="crops cached per image with --cache-trunk: 1 (the centre) when none train, "
                   "else 2")  # fmt: skip
    f.add_argument("--crop-size", type=int, default=None,
                   help=f"training resolution ({CPU_CROP} on a CPU, the model's input size on a GPU)")  # fmt: skip
    f.add_argument(
        "--update-batchnorm", action="store_true", help="re-estimate the backbone's batch-norm statistics in training"
    )
    f.add_argument(
        "--split", choices=PROTOCOLS, default="images",
        help="images (my classes): 20%% of each class's images held out and judged; classes (new classes): the "
        "second half of the sorted classes held out; none: all train",
    )  # fmt: skip
    f.add_argument("--split-seed", type=int, default=None, help="shuffle before splitting with this seed")
    f.add_argument("--follow-links", action="store_true", help="follow symbolic links that lead out of the folder")
    f.add_argument("--test-dir", type=Path, default=None, help="explicit held-out folder (implies --split none)")
    f.add_argument("--keep-last", action="store_true",
                   help="export the last epoch; by default the best epoch on training images set aside (the "
                   "starting model included) is exported")  # fmt: skip
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--device", default="auto")
    f.add_argument("--workers", type=int, default=None, help="image-decoding processes (default: by device)")
    f.add_argument("--nproc", type=int, default=1,
                   help="training processes on this machine, one per GPU, each with its own classes of every batch "
                   "(torchrun starts them; under torchrun its --nproc-per-node counts instead)")  # fmt: skip
    f.add_argument("--quiet", action="store_true")

    e = sub.add_parser("eval", help="retrieval metrics of a model on a labelled folder")
    e.add_argument("model", type=Path)
    e.add_argument("data", type=Path)
    e.add_argument("--split", choices=["test", "all"], default="test")
    e.add_argument("--dims", default=None, help="comma-separated dimensions (default: the card's nested dims)")
    e.add_argument("--max-images", type=int, default=None)
    e.add_argument("--no-clustering", action="store_true", help="skip NMI and F1")
    e.add_argument("--rerank", choices=["none", "qe", "kreciprocal"], default=None,
                   help="score rankings after re-ranking: qe (average query expansion of the 2 nearest) or "
                   "kreciprocal (k1=20, k2=6, lambda=0.3); bench/results/rerank.md says what each does")  # fmt: skip
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true")

    sub.add_parser("methods", help="list the training methods and their hyperparameters")
    return p


RECIPE_FLAGS = {
    "epochs": "epochs", "warmup_epochs": "warmup_epochs", "classes_per_batch": "classes_per_batch",
    "per_class": "per_class", "batches_per_epoch": "batches_per_epoch", "lr": "lr",
    "backbone_lr_mult": "backbone_lr_mult", "cache_views": "cache_views", "crop_size": "crop_size",
    "proxy_lr_mult": "proxy_lr_mult", "choice_folds": "choice_folds", "stretch": "stretch",
}  # fmt: skip


def recipe_from_args(args: argparse.Namespace, train: Any, device_type: str, processes: int = 1) -> Any:
    """The folder's default recipe (trainer.recipe) with every flag the person gave on top; on several processes
    the recipe's classes per batch round down to a multiple of their number (each trains its own classes)."""
    from dataclasses import replace

    from trainer.distributed import shared_classes_per_batch
    from trainer.recipe import FolderShape, default_recipe

    overrides: dict[str, Any] = {k: getattr(args, a) for a, k in RECIPE_FLAGS.items() if getattr(args, a) is not None}
    if args.trainable_stages is not None:
        overrides["trainable_stages"] = args.trainable_stages
    if args.cache_trunk:
        overrides["cache_trunk"] = True
    overrides.update(
        method=args.method, method_params=_parse_params(args.param), dim=args.dim, nested=not args.no_nested,
        freeze_batchnorm=not args.update_batchnorm, seed=args.seed, device=args.device, num_workers=args.workers,
    )  # fmt: skip
    if args.cache_trunk and "trainable_stages" not in overrides and device_type != "cpu":
        overrides["trainable_stages"] = 2
    config = default_recipe(FolderShape.of(train), device_type, **overrides)
    if processes > 1 and args.classes_per_batch is None:
        config = replace(config, classes_per_batch=shared_classes_per_batch(config.classes_per_batch, processes))
    return config


def shared_problem(config: Any, train: Any, processes: int) -> str | None:
    """Why `processes` processes cannot share this run (trainer.distributed.distributed_problem), or None."""
    from dataclasses import replace

    from trainer.distributed import distributed_problem

    used = min(config.classes_per_batch, len(train.classes))
    return distributed_problem(replace(config, classes_per_batch=used), processes)


def skipped_lines(skipped: Sequence[Any], shown: int = 5) -> list[str]:
    """The files left out, a few by name and the rest counted by reason (a flat folder of 20,000 photos would
    otherwise print 20,000 lines before the one that matters).

    >>> from types import SimpleNamespace as S
    >>> for line in skipped_lines([S(path=f"{i}.jpg", reason="not in a class sub-folder") for i in range(7)], 2):
    ...     print(line)
    skipped 0.jpg: not in a class sub-folder
    skipped 1.jpg: not in a class sub-folder
    and 5 more skipped: 5 not in a class sub-folder
    """
    lines = [f"skipped {s.path}: {s.reason}" for s in skipped[:shown]]
    rest = Counter(s.reason for s in skipped[shown:])
    if rest:
        counts = ", ".join(f"{n:,} {reason}" for reason, n in rest.most_common())
        lines.append(f"and {sum(rest.values()):,} more skipped: {counts}")
    return lines


def cmd_fit(args: argparse.Namespace) -> int:
    from trainer.card import recipe_text
    from trainer.data import DatasetError, require_trainable, scan_labelled_folder
    from trainer.devices import pick_device
    from trainer.distributed import launch_local, launched_rank, launched_size, process_group
    from trainer.epoch_choice import run_parts
    from trainer.fit import FitCallbacks, fit
    from trainer.folders import carve_validation, split
    from trainer.progress import Progress, format_progress
    from trainer.recipe import FolderShape, recipe_warnings

    try:
        folder = scan_labelled_folder(args.data, follow_outside=args.follow_links)
        problem: DatasetError | None = None
        try:
            require_trainable(folder)  # the folder's own problems first, before any split can hide them
        except DatasetError as exc:
            problem = exc
        if problem is not None:  # the one line that matters first, then what was left out
            print(f"trainer: cannot train on {args.data}: {problem}", file=sys.stderr)
        for line in skipped_lines(folder.skipped):
            print(f"trainer: {line}", file=sys.stderr)
        if problem is not None:
            return EXIT_USAGE
        protocol = "none" if args.test_dir is not None else args.split
        train, held_out = split(folder, protocol, args.split_seed)
        if args.test_dir is not None:
            held_out = scan_labelled_folder(args.test_dir)
        require_trainable(train)
        fitted, chooser = (train, None) if args.keep_last else carve_validation(train, protocol, args.seed)
    except DatasetError as exc:
        print(f"trainer: cannot train on {args.data}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    device = pick_device(args.device)
    processes = launched_size() if launched_size() > 1 else args.nproc
    config = recipe_from_args(args, fitted, device.type, processes)
    unshared = shared_problem(config, fitted, processes)
    if unshared is not None:
        if launched_rank() == 0:
            print(f"trainer: cannot train on {processes} processes: {unshared}", file=sys.stderr)
        return EXIT_USAGE
    if processes > 1 and launched_size() == 1:
        return launch_local(processes, args.argv)  # these processes run this command again, under torchrun
    base = None if args.backbone else (args.base or BUNDLED_MODEL)
    follower = launched_rank() > 0  # rank 0 alone prints
    quiet = args.quiet or follower
    say = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    # warnings are printed even with --quiet
    warn = (lambda text: None) if follower else (lambda text: print(text, file=sys.stderr, flush=True))
    held = (
        f"{len(held_out.samples)} held-out images of {len(held_out.classes)} classes"
        if held_out
        else "nothing held out"
    )
    parts = run_parts(fitted, chooser, config)
    say(f"trainer: {len(parts.train.samples)} training images of {len(parts.train.classes)} classes, {parts.text()}, "
        f"{held}")  # fmt: skip
    say(f"trainer: recipe: {recipe_text(asdict(config))}")
    for warning in recipe_warnings(FolderShape.of(fitted), protocol):
        warn(f"trainer: warning: {warning}")

    def progress(p: Progress) -> None:
        if not quiet and sys.stderr.isatty():
            print("\r" + format_progress(p), end="", file=sys.stderr, flush=True)

    def epoch(e: int, m: dict[str, float]) -> None:
        shown = "  ".join(f"{k}={v:.4f}" for k, v in m.items() if k != "epoch")
        when = "before training" if e == 0 else f"epoch {e}/{config.epochs}"
        say(f"\n{when}: {shown}")

    callbacks = FitCallbacks(on_epoch=epoch, on_progress=progress, on_message=lambda t: warn(f"trainer: {t}"))
    with process_group(device.type):
        result = fit(
            fitted, args.out, config, base=base, backbone=args.backbone or "efficientnet_lite0", validation=held_out,
            callbacks=callbacks, backbone_weights=args.backbone_weights, selection=chooser,
        )  # fmt: skip
    if follower:
        return EXIT_OK
    kept = "the last" if result.kept_epoch is None else (
        "the starting model (no epoch beat it)" if result.kept_epoch == 0 else f"epoch {result.kept_epoch}"
    )  # fmt: skip
    epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
    print(f"wrote {result.model_path}: {epochs} trained, {kept} kept; {result.card.dim}-d, method {config.method}")
    if result.history and held_out is not None and "R@1" in result.history[0]:
        start, end = result.history[0], _kept_record(result.history, result.kept_epoch)
        print(f"held-out Recall@1: {100 * start['R@1']:.1f} -> {100 * end['R@1']:.1f} float, "
              f"{100 * start['binary R@1']:.1f} -> {100 * end['binary R@1']:.1f} binary")  # fmt: skip
    return EXIT_OK


def _kept_record(history: list[dict[str, float]], kept_epoch: int | None) -> dict[str, float]:
    if kept_epoch is None:
        return history[-1]
    return next(h for h in history if h.get("epoch") == kept_epoch)


def cmd_eval(args: argparse.Namespace) -> int:
    from trainer.card import ModelFileError
    from trainer.data import DatasetError, scan_labelled_folder
    from trainer.evaluation import evaluate_model, metrics_table, select_split
    from trainer.model import load_model

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
    if args.rerank is not None:
        from trainer.evaluation import embed_folder
        from trainer.rerank import MAX_ITEMS, reranked_metrics

        if len(folder.samples) > MAX_ITEMS and (args.max_images is None or args.max_images > MAX_ITEMS):
            print(f"trainer: --rerank compares every pair; add --max-images {MAX_ITEMS} or less", file=sys.stderr)
            return EXIT_USAGE
        _paths, labels, emb = embed_folder(model, folder, args.device, args.max_images)
        metrics = reranked_metrics(emb, labels, [d for d in dims or model.card.nested_dims if d % 8 == 0], args.rerank)
    else:
        metrics = evaluate_model(
            model, folder, dims, args.device, with_clustering=not args.no_clustering, max_images=args.max_images
        )
    if args.json:
        print(json.dumps({rep: {str(d): v for d, v in per.items()} for rep, per in metrics.items()}, indent=2))
    else:
        size = f"{len(folder.classes)} classes, {len(folder.samples)} images"
        reranked = f", re-ranked: {args.rerank}" if args.rerank else ""
        title = f"{model.card.name} on {args.data} ({args.split}: {size}{reranked})"
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
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv  # `fit --nproc N` runs the same command on N processes
    from trainer.card import ModelFileError
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
    except ModelFileError as exc:
        print(f"trainer: cannot load model: {exc}", file=sys.stderr)
        return EXIT_BAD_MODEL
    except ValueError as exc:
        print(f"trainer: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
