"""Train the model the app ships, judge it on held-out classes, and write it with its card.

Training data (the datasets README's rule for a model meant to generalise): every class of cars98 and
flowers51, and the training halves (first half of the sorted class names) of cub100, caltech101 and clothing10.
Judged on the test halves of cub100 and caltech101, which it never sees, beside the untrained ImageNet backbone.

    python scripts/train_bundled_model.py --out resources/models/default [--epochs N] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from trainer.backbones import backbone_stages
from trainer.card import ModelCard, metrics_table, recipe_text
from trainer.data import LabelledFolder, scan_labelled_folder, split_by_class
from trainer.devices import pick_device
from trainer.fit import FitCallbacks, FitConfig, fit
from trainer.metrics import evaluate
from trainer.model import EmbeddingModel, load_model, save_model
from trainer.progress import Progress, format_progress
from trainer.trunk_cache import compute_trunk_cache, load_cache, save_cache

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
WHOLE = ("cars98", "flowers51")
TRAIN_HALF = ("cub100", "caltech101", "clothing10")
JUDGED = ("cub100", "caltech101")


def combined_training_set() -> LabelledFolder:
    classes: list[str] = []
    samples: list[tuple[Path, int]] = []
    for name in (*WHOLE, *TRAIN_HALF):
        folder = scan_labelled_folder(DATASETS / name)
        part = folder if name in WHOLE else split_by_class(folder)[0]
        offset = len(classes)
        classes.extend(f"{name}/{c}" for c in part.classes)
        samples.extend((p, y + offset) for p, y in part.samples)
    return LabelledFolder(DATASETS, classes, samples)


def judge(models: dict[str, EmbeddingModel], n_frozen: int, device: str, cache_dir: Path) -> dict[str, dict]:
    """Metrics of several models that share their first `n_frozen` stages, on each judged test half.

    The shared stages run once per test image (cached); each model then runs only its own last stages,
    which makes judging the trained model beside the untrained backbone cost one forward pass, not two.
    """
    dev = pick_device(device)
    results: dict[str, dict] = {name: {} for name in models}
    first = next(iter(models.values()))
    trunk = nn.Sequential(*backbone_stages(first.backbone)[:n_frozen])
    for data in JUDGED:
        test = split_by_class(scan_labelled_folder(DATASETS / data))[1]
        card = first.card
        key = f"judge-{data}-{n_frozen}-{card.backbone}-{card.input_size}"
        maps = load_cache(cache_dir / f"{key}.safetensors", key)
        if maps is None:
            maps = compute_trunk_cache(
                trunk, first.normalize_uint8, test.samples, card.input_size, card.resize_size, 1, dev,
                progress=_throttled_progress(),
            )  # fmt: skip
            save_cache(maps, cache_dir / f"{key}.safetensors", key)
        labels = test.labels
        for name, model in models.items():
            model.eval().to(dev)
            head = backbone_stages(model.backbone)[n_frozen:]
            parts = []
            with torch.inference_mode():
                for i in range(0, len(maps), 128):
                    x = maps[i : i + 128, 0].to(dev).float()
                    for stage in head:
                        x = stage(x)
                    parts.append(model.embedding(model.norm(model.pool(x).flatten(1))).float().cpu())
            emb = torch.cat(parts).numpy()
            dims = [d for d in model.card.nested_dims if d % 8 == 0]
            metrics = evaluate(emb, labels, dims, ks=(1, 2, 4, 8))
            results[name][data] = {rep: {str(d): v for d, v in per.items()} for rep, per in metrics.items()}
            print(metrics_table(metrics, f"{name}: {data} test classes ({len(labels)} images)"), flush=True)
    return results


def _throttled_progress(every: float = 30.0) -> Callable[[Progress], None]:
    last = [0.0]

    def report(pr: Progress) -> None:
        if time.time() - last[0] > every or pr.done == pr.total:
            last[0] = time.time()
            print(format_progress(pr), flush=True)

    return report


def recipe_sentence(config: FitConfig) -> str:
    return f"Recipe: {recipe_text(asdict(config))} Trained on a {pick_device(config.device).type.upper()}."


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "resources" / "models" / "default")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bundled")
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--trainable-stages", type=int, default=1)
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument(
        "--cache-trunk",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compute the frozen stages once per image (fast, but the trained stages then see fixed crops)",
    )
    p.add_argument("--cache-views", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--backbone-lr-mult", type=float, default=1.0)
    p.add_argument("--classes-per-batch", type=int, default=25)
    p.add_argument("--per-class", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument(
        "--freeze-batchnorm",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep ImageNet batch-norm statistics (the shipped model was trained without: --no-freeze-batchnorm)",
    )
    args = p.parse_args()
    if not DATASETS.is_dir():
        print(f"needs {DATASETS}", file=sys.stderr)
        return 2

    train = combined_training_set()
    print(f"training set: {len(train.classes)} classes, {len(train.samples)} images", flush=True)
    full_stages = args.trainable_stages <= 0
    config = FitConfig(
        dim=args.dim, epochs=args.epochs, warmup_epochs=args.warmup_epochs, lr=args.lr,
        backbone_lr_mult=args.backbone_lr_mult, classes_per_batch=args.classes_per_batch, per_class=args.per_class,
        trainable_stages=None if full_stages else args.trainable_stages,
        cache_trunk=args.cache_trunk and not full_stages,
        cache_views=args.cache_views, crop_size=args.crop_size, device=args.device, cache_dir=str(args.work),
        freeze_batchnorm=args.freeze_batchnorm,
    )  # fmt: skip
    started = time.time()
    result = fit(
        train, args.work / "model", config,
        callbacks=FitCallbacks(
            on_epoch=lambda e, m: print(f"epoch {e}: {m}", flush=True), on_progress=_throttled_progress(),
            on_message=lambda t: print(t, flush=True),
        ),
    )  # fmt: skip
    train_minutes = (time.time() - started) / 60
    model = load_model(result.model_path)
    models = {"trained": model}
    if not args.skip_baseline:
        untrained_card = ModelCard.for_backbone("untrained ImageNet backbone", "efficientnet_lite0")
        models["untrained_backbone"] = EmbeddingModel(untrained_card, pretrained=True)
    n_frozen = 0 if full_stages else len(backbone_stages(model.backbone)) - args.trainable_stages
    judged = judge(models, n_frozen, args.device, args.work)
    trained, baseline = judged["trained"], judged.get("untrained_backbone", {})

    card = ModelCard(
        **{
            **asdict(model.card),
            "name": "normsoftmax-efficientnet-lite0",
            "description": (
                "NormSoftmax (Zhai & Wu 2019) embedding on EfficientNet-Lite0: LayerNorm without affine, "
                f"{model.card.dim}-d embedding layer without bias, nested prefixes {model.card.nested_dims} each "
                f"trained with its own proxies, binarize at zero for Hamming search. {recipe_sentence(config)}"
            ),
            "trained_on": [
                "cars98 (all 98 classes)", "flowers51 (all 51 classes)", "cub100 (first 50 classes)",
                "caltech101 (first 50 classes)", "clothing10 (first 5 classes)",
            ],
            "metrics": {
                "protocol": "test halves (second half of sorted class names), each image a query against all others",
                "trained": trained,
                "untrained_backbone": baseline,
            },
        }
    )  # fmt: skip
    card.recipe = {**card.recipe, "train_minutes": round(train_minutes, 1)}
    model.card = card
    save_model(model, args.out, card)
    print(json.dumps({"wrote": str(args.out), "minutes": round(train_minutes, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
