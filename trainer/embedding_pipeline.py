"""Batched embedding of image files, with decoding overlapped with inference, whatever runs the model.

JPEG decoding and resizing run in a thread pool (PIL releases the GIL while it decodes), a few batches ahead of
the model, so the model never waits on decode. Unreadable files are reported per batch and never stop the run;
cancellation is checked between batches. `Embedder` is the pipeline; what runs the model on a decoded batch is a
subclass's `embed_arrays`: torch (trainer.inference.BatchEmbedder) or ONNX Runtime
(trainer.onnx_runtime.OnnxEmbedder). torch-free, so the ONNX path never loads torch.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from trainer.images import ImageLoadError, Skipped, load_for_model, load_rgb, preprocess_pil
from trainer.progress import CancelCheck, Cancelled, ProgressCallback, RateMeter, never_cancelled

if TYPE_CHECKING:
    from PIL import Image

    from trainer.card import ModelCard


Thumbnailer = Callable[["Image.Image"], bytes]
"""Makes a small picture from the one decoded for the model (the indexer stores it: explorer.engine.thumbnail_store)."""


@dataclass
class EmbeddedBatch:
    paths: list[Path]
    embeddings: npt.NDArray[np.float32]  # (len(paths), D), raw (not normalised): binarize and prefixes need it
    skipped: list[Skipped]
    thumbnails: list[bytes] = field(default_factory=list)  # one per path when a thumbnailer was given


@dataclass
class _Decoded:
    array: npt.NDArray[np.uint8]
    thumbnail: bytes


def _decode(path: Path, resize: int, crop: int, thumbnailer: Thumbnailer | None) -> _Decoded | Skipped:
    try:
        picture = load_rgb(path, min_side=resize)
        # the thumbnail from the picture already decoded (a reduced DCT scale of a JPEG): no second decode later
        return _Decoded(preprocess_pil(picture, resize, crop), thumbnailer(picture) if thumbnailer else b"")
    except ImageLoadError as exc:
        return Skipped(path, str(exc))
    except Exception as exc:  # a decoder bug on one hostile file must not end the run
        return Skipped(path, f"could not decode: {type(exc).__name__}: {exc}".splitlines()[0])


class Embedder:
    """The decode-ahead pipeline around one model runner (`embed_arrays`)."""

    card: ModelCard
    batch_size: int
    out_dim: int
    decode_workers: int = max(2, min(32, os.cpu_count() or 2))
    prefetch_batches: int = 2

    def embed_arrays(self, arrays: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Embed already-decoded uint8 NHWC images (input_size square)."""
        raise NotImplementedError

    def embed_image(self, image: Image.Image) -> npt.NDArray[np.float32]:
        """One already-loaded RGB image (a pasted picture, a query) -> (D,)."""
        arr = preprocess_pil(image.convert("RGB"), self.card.resize_size, self.card.input_size)
        return self.embed_arrays(arr[None])[0]

    def embed_file(self, path: Path) -> npt.NDArray[np.float32]:
        """One file -> (D,); raises ImageLoadError with the reason when it cannot be read."""
        arr = load_for_model(Path(path), self.card.resize_size, self.card.input_size)
        return self.embed_arrays(arr[None])[0]

    def embed_paths(
        self,
        paths: Sequence[Path],
        progress: ProgressCallback | None = None,
        cancel: CancelCheck = never_cancelled,
        thumbnailer: Thumbnailer | None = None,
    ) -> Iterator[EmbeddedBatch]:
        """Yield one EmbeddedBatch per batch of `paths`, in order; raise Cancelled between batches. With a
        `thumbnailer`, each batch also carries its pictures' thumbnails, made in the decoding threads."""
        meter = RateMeter(len(paths), "embedding")
        resize, crop = self.card.resize_size, self.card.input_size
        chunks = [list(paths[i : i + self.batch_size]) for i in range(0, len(paths), self.batch_size)]
        with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="decode") as pool:
            pending: deque[tuple[list[Path], list[Future[_Decoded | Skipped]]]] = deque()
            feed = iter(chunks)

            def submit_next() -> None:
                chunk = next(feed, None)
                if chunk is not None:
                    pending.append((chunk, [pool.submit(_decode, p, resize, crop, thumbnailer) for p in chunk]))

            for _ in range(self.prefetch_batches + 1):
                submit_next()
            try:
                while pending:
                    if cancel():
                        raise Cancelled("embedding cancelled")
                    chunk, futures = pending.popleft()
                    submit_next()
                    decoded = [f.result() for f in futures]
                    good = [(p, d) for p, d in zip(chunk, decoded, strict=True) if not isinstance(d, Skipped)]
                    skipped = [d for d in decoded if isinstance(d, Skipped)]
                    if good:
                        emb = self.embed_arrays(np.stack([d.array for _, d in good]))
                    else:
                        emb = np.zeros((0, self.out_dim), np.float32)
                    thumbnails = [d.thumbnail for _, d in good] if thumbnailer else []
                    yield EmbeddedBatch([p for p, _ in good], emb, skipped, thumbnails)
                    report = meter.advance(len(chunk))
                    if progress is not None:
                        progress(report)
            finally:
                for _, futures in pending:
                    for f in futures:
                        f.cancel()


def embed_all(
    embedder: Embedder,
    paths: Sequence[Path],
    progress: ProgressCallback | None = None,
    cancel: CancelCheck = never_cancelled,
) -> tuple[list[Path], npt.NDArray[np.float32], list[Skipped]]:
    """Convenience: run embed_paths to the end and concatenate (for evaluation-sized sets)."""
    kept: list[Path] = []
    parts: list[npt.NDArray[np.float32]] = []
    skipped: list[Skipped] = []
    for batch in embedder.embed_paths(paths, progress, cancel):
        kept.extend(batch.paths)
        parts.append(batch.embeddings)
        skipped.extend(batch.skipped)
    emb = np.concatenate(parts) if parts else np.zeros((0, embedder.out_dim), np.float32)
    return kept, emb, skipped
