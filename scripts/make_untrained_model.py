"""Write the untrained bundled model: ImageNet EfficientNet-Lite0 + LayerNorm, no embedding layer.

This is the honest placeholder the app ships until the trainer's NormSoftmax model replaces it; the
reference figures in its card were measured on ../shared/datasets (see its README).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trainer.card import ModelCard
from trainer.model import EmbeddingModel, save_model

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "resources" / "models" / "default"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    card = ModelCard.for_backbone(
        "efficientnet-lite0-imagenet-untrained",
        "efficientnet_lite0",
        description=(
            "UNTRAINED for retrieval: ImageNet EfficientNet-Lite0 features, average-pooled and "
            "LayerNorm-centred (no affine), 1280-d, no embedding layer. Nested prefixes are not trained."
        ),
        trained_on=["ImageNet-1k classification (backbone only)"],
        recipe={"method": "none"},
    )
    model = EmbeddingModel(card, pretrained=True)
    weights, card_path = save_model(model, args.out)
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB) and {card_path}")


if __name__ == "__main__":
    main()
