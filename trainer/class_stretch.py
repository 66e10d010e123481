"""The small-folder recipe: stretch the embedding layer along the directions that tell the folder's classes apart.

With a few dozen images a class, every way of training by steps that the bench tried either barely moved the
model or memorised the training images: the last backbone stages (cars, 8 classes x 30: 87.5 -> 60-70 held-out
Recall@1), the embedding layer by SGD (median +2.8 over bench/finetune_small.py's 9 folders, my classes), random
crops, L2-SP, weight soups, within-class whitening. Yet the labels hold more than that: a nearest-class-mean
classifier on the same training images names the class of a held-out image 5 to 12 points more often than the
starting model's nearest neighbour finds one of its class (clothing, 6 classes: 87.5 % against 75.0 %).

So the embedding layer W learns only a rank-(C-1) change, in closed form:

1. the folder's NormSoftmax proxies (temperature 0.05, starting at the class means) are fitted to the starting
   model's normalised embeddings of the training images, with the embedding frozen (L-BFGS, 100 iterations);
2. the directions that separate the proxies (their span, centred: C-1 directions for C classes) are scaled by
   `factor` and everything else is left as it was: W' = (I + (factor - 1) Q Q^T) W, Q an orthonormal basis.

Images of one class then agree on what makes their class differ from the others, and that agreement, not the
background or the pose, decides the nearest neighbour; binary codes gain most (their signs follow the stretched
directions). The result is still the one model definition (backbone, LayerNorm, a linear layer without bias), so
search, binarisation and ONNX export are unchanged, and a run takes seconds after the features are computed.

Measured on bench/finetune_small.py's 9 folders (my classes, held-out Recall@1 at full width), from features of
both of its splits (18 runs), median / worst gain float | binary: factor 3 +3.5 / -1.7 | +8.3 / +0.0; 10 +4.7 /
-1.7 | +8.1 / +0.0; 30 the same as 10 (the stretched directions already decide); the nested prefixes gain too
(factor 10: 64-d +4.4 / -0.9, 256-d +5.8 / +0.0). Through
the whole recipe (bench/results/finetune_small.md): split 0 median +5.6, worst +0.0 (the SGD head: +2.8, +0.0);
split 1 +3.7, worst -1.7 (one image of 60, from 100 %; the SGD head: +2.8, -1.7). Whether the stretched model
beats the start is judged on folds of the training images (`choose_by_folds`); the start is kept when it does not.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from trainer.epoch_choice import fold_of_each_image, fold_scores, replaces_best, selection_score
from trainer.progress import CancelCheck, Cancelled, never_cancelled

TEMPERATURE = 0.05
"""The paper's NormSoftmax temperature, for the proxies fitted here too."""
PROXY_ITERATIONS = 100


def fit_proxies(
    embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = TEMPERATURE, iterations: int = PROXY_ITERATIONS
) -> tuple[torch.Tensor, float]:
    """((C, D) unit proxies of the classes present in `labels`, in sorted label order; their NormSoftmax loss),
    fitted with NormSoftmax's loss to fixed embeddings, starting at the normalised class means.

    >>> e = torch.tensor([[1.0, 0.1], [0.9, -0.1], [-0.2, 1.0], [0.1, 0.9]])
    >>> p, loss = fit_proxies(e, torch.tensor([0, 0, 1, 1]))
    >>> p.shape, bool((F.normalize(e, dim=1) @ p.T).argmax(1).eq(torch.tensor([0, 0, 1, 1])).all()), loss < 0.01
    (torch.Size([2, 2]), True, True)
    """
    x = F.normalize(embeddings.detach().double(), dim=1)
    classes, y = torch.unique(labels, return_inverse=True)
    means = torch.zeros(len(classes), x.shape[1], dtype=x.dtype).index_add_(0, y, x)
    proxies = torch.nn.Parameter(F.normalize(means, dim=1))
    optimizer = torch.optim.LBFGS([proxies], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ F.normalize(proxies, dim=1).T / temperature, y)
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = F.normalize(proxies.detach(), dim=1)
    loss = float(F.cross_entropy(x @ fitted.T / temperature, y))
    return fitted.float(), loss


def stretch_matrix(proxies: torch.Tensor, factor: float) -> torch.Tensor:
    """(D, D) = I + (factor - 1) Q Q^T, Q an orthonormal basis of the centred proxies' span (C-1 directions).

    A vector along the one direction separating two proxies grows by `factor`; one orthogonal to it is unchanged:

    >>> a = stretch_matrix(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), 10.0)
    >>> across, along = torch.tensor([1.0, -1.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    >>> [round(float(v), 3) for v in a @ across], [float(v) for v in a @ along]
    ([10.0, -10.0, 0.0], [0.0, 0.0, 1.0])
    """
    centred = (proxies - proxies.mean(0, keepdim=True)).double()
    u, s, _ = torch.linalg.svd(centred.T, full_matrices=False)
    q = u[:, s > 1e-6 * max(float(s.max()), 1e-12)] if len(s) else u[:, :0]
    eye = torch.eye(proxies.shape[1], dtype=torch.float64)
    return (eye + (factor - 1.0) * q @ q.T).float()


def stretched_weight(
    weight: torch.Tensor, pooled: torch.Tensor, labels: torch.Tensor, factor: float
) -> tuple[torch.Tensor, float]:
    """(the embedding layer's new weight (D, F), the fitted proxies' loss) for the LayerNorm'd pooled features
    `pooled` (N, F) of the training images and their labels."""
    weight = weight.detach().float().cpu()
    if len(torch.unique(labels)) < 2:
        return weight.clone(), 0.0
    proxies, loss = fit_proxies(pooled.float().cpu() @ weight.T, labels.cpu())
    return stretch_matrix(proxies, factor) @ weight, loss


def choose_by_folds(
    weight: torch.Tensor,
    pooled: torch.Tensor,
    labels: npt.NDArray[np.int64],
    folds: int,
    factor: float,
    seed: int = 0,
    cancel: CancelCheck = never_cancelled,
) -> tuple[bool, dict[str, float], dict[str, float]]:
    """(stretch?, the start's fold scores, the stretched model's): each fold's images are searched among the other
    folds' images (as a person searches their labelled categories) by the start and by a stretch fitted without
    them; the stretch is chosen when its mean scores beat the start's by trainer.epoch_choice.replaces_best (float
    and binary Recall@1 no worse, and a higher selection score)."""
    fold = fold_of_each_image(labels, folds, seed)
    runs: dict[str, list[dict[str, float]]] = {"start": [], "stretched": []}
    y, pooled = torch.from_numpy(labels), pooled.detach().float().cpu()
    start_emb = (pooled @ weight.detach().float().cpu().T).numpy()  # the start is the same model in every fold
    for f in range(folds):
        if cancel():
            raise Cancelled(f"training cancelled while judging the stretch (fold {f + 1} of {folds})")
        rest, judge = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        fitted, _loss = stretched_weight(weight, pooled[rest], y[rest], factor)
        runs["start"].append(fold_scores(start_emb, labels, judge, rest))
        runs["stretched"].append(fold_scores((pooled @ fitted.T).numpy(), labels, judge, rest))
    start, stretched = ({k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for rs in runs.values())
    return replaces_best(stretched, start, selection_score(start)), start, stretched
