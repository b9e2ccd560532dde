"""A tiny MNIST-format folder (IDX files) whose ten classes are easy to learn: a bright block per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netbonsai.data.idx import write_idx


def write_synthetic_mnist(root: Path, n_train: int = 1200, n_test: int = 300, seed: int = 0, gz: bool = True) -> Path:
    """Write train/t10k images (28x28 uint8) and labels; class c lights a 4x4 block at row 2c."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            row = 2 * int(label) + 2
            images[i, row : row + 4, 10:14] = 255
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return root
