"""Binary codes: the sign of each embedding coordinate, packed eight to a byte.

The NormSoftmax paper binarizes at zero, so a D-dimensional embedding becomes D bits (D/8 bytes): 2048 bits
cost what 64 float32 values cost. Bits are packed big-endian within each byte (numpy's `packbits`), so the
first d/8 bytes of a code are exactly the code of the d-dimensional prefix of the embedding: nested
dimensions need no re-encoding.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def binarize(embeddings: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Pack `embeddings > 0` into bytes along the last axis.

    >>> binarize(np.array([[0.5, -1.0, 2.0, 0.0, 0.1, -0.1, 0.3, 0.2]])).tolist()
    [[171]]
    """
    e = np.asarray(embeddings)
    if e.shape[-1] % 8:
        raise ValueError(f"binary codes need a dimension divisible by 8, got {e.shape[-1]}")
    return np.packbits(e > 0, axis=-1)


def code_prefix(codes: npt.NDArray[np.uint8], dim: int) -> npt.NDArray[np.uint8]:
    """The code of the `dim`-dimensional prefix of the embedding behind `codes`."""
    if dim % 8:
        raise ValueError(f"a binary prefix needs a dimension divisible by 8, got {dim}")
    if dim > codes.shape[-1] * 8:
        raise ValueError(f"asked for {dim} bits of a {codes.shape[-1] * 8}-bit code")
    return codes[..., : dim // 8]


def hamming_distances(query: npt.NDArray[np.uint8], codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """Hamming distance between one packed query code and each row of `codes` (exact, any size).

    >>> hamming_distances(np.array([0b1111_0000], np.uint8), np.array([[0b1111_0000], [0b0000_1111]], np.uint8))
    array([0, 8])
    """
    xor = np.bitwise_xor(codes, query[None, :])
    return _POPCOUNT[xor].sum(axis=-1, dtype=np.int64)


def pairwise_hamming(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """All-pairs Hamming distances of packed codes, (n, n); for metrics on evaluation-sized sets."""
    bits = np.unpackbits(codes, axis=-1).astype(np.float32)
    ones = bits.sum(axis=1)
    agree_ones = bits @ bits.T
    # |a xor b| = |a| + |b| - 2 |a and b|
    return np.rint(ones[:, None] + ones[None, :] - 2.0 * agree_ones).astype(np.int64)
