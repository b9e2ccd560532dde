"""The image tasks of paper 000: brightness prediction and image approximation.

Brightness prediction: for each pixel ``*`` at column x, row y, five previous points
0 = (x-1, y), 1 = (x, y-1), 2 = (x-1, y-1), 3 = (x+1, y-1), 4 = (x-2, y). Inputs are points 1..4
minus point 0, divided by 255; the target is ``*`` minus point 0, divided by 255. The loss is
reported as the paper does: mean squared error in 8-bit units (MSE * 255**2).

Image approximation: f(x, y) -> brightness in [0, 1] with x, y scaled to [-1, 1]; loss is the MSE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .images import load_image

TASKS = ("brightness", "approx")
# (dx, dy) of points 0..4 relative to the predicted pixel
NEIGHBOURHOOD = ((-1, 0), (0, -1), (-1, -1), (1, -1), (-2, 0))
MIN_SAMPLES = 10


@dataclass
class TaskData:
    """A task's explicit train/validation split, ready for training (float32 tensors)."""

    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    image: str
    image_shape: tuple[int, int]
    loss_scale: float  # multiply an MSE by this to report it (255**2 for brightness)
    seed: int
    preprocessing: dict = field(default_factory=dict)

    @property
    def n_in(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_out(self) -> int:
        return self.y_train.shape[1]

    def describe(self) -> dict:
        """JSON-ready summary: sizes, split and preprocessing."""
        return {
            "task": self.task,
            "image": self.image,
            "image_shape": list(self.image_shape),
            "n_train": int(self.x_train.shape[0]),
            "n_val": int(self.x_val.shape[0]),
            "split_seed": self.seed,
            "loss_scale": self.loss_scale,
            "preprocessing": self.preprocessing,
        }


def brightness_samples(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(n, 4)`` and targets ``(n, 1)`` of brightness prediction for a [0, 255] image."""
    height, width = image.shape
    if width < 4 or height < 2:
        raise InputError(
            f"image is {width}x{height} pixels; brightness prediction needs at least 4x2 "
            "(two pixels to the left, one to the right and one row above each predicted pixel)"
        )
    ys = slice(1, height)
    xs = slice(2, width - 1)

    def point(dx: int, dy: int) -> np.ndarray:
        return image[ys.start + dy : ys.stop + dy, xs.start + dx : xs.stop + dx].reshape(-1)

    base = point(*NEIGHBOURHOOD[0])
    inputs = np.stack([point(*offset) - base for offset in NEIGHBOURHOOD[1:]], axis=1) / 255.0
    target = (image[ys, xs].reshape(-1) - base)[:, None] / 255.0
    return inputs.astype(np.float32), target.astype(np.float32)


def approx_samples(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(n, 2)`` = (x, y) in [-1, 1] and targets ``(n, 1)`` = brightness in [0, 1]."""
    height, width = image.shape
    if width < 2 or height < 2:
        raise InputError(f"image is {width}x{height} pixels; image approximation needs at least 2x2")
    ys, xs = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    inputs = np.stack([xs.reshape(-1), ys.reshape(-1)], axis=1)
    return inputs.astype(np.float32), (image.reshape(-1, 1) / 255.0).astype(np.float32)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` into train and validation indices."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    if n_val >= n:
        raise InputError(f"{n} samples are too few to split off a validation set")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def load_task(
    task: str,
    image: str | Path | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_train: int | None = None,
    max_val: int | None = None,
) -> TaskData:
    """Build a task's samples from an image and split them (seeded) into train and validation.

    ``max_train`` / ``max_val`` keep a seeded random subset of each side (quick presets).
    """
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    for name, value in (("max_train", max_train), ("max_val", max_val)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be a positive number of samples, got {value}")
    pixels, source = load_image(image)
    builder = brightness_samples if task == "brightness" else approx_samples
    inputs, targets = builder(pixels)
    if len(inputs) < MIN_SAMPLES:
        raise InputError(f"{source}: the image gives only {len(inputs)} samples; need at least {MIN_SAMPLES}")
    train, val = split_indices(len(inputs), val_fraction, seed)
    rng = np.random.default_rng(seed + 1)
    if max_train is not None and len(train) > max_train:
        train = np.sort(rng.choice(train, max_train, replace=False))
    if max_val is not None and len(val) > max_val:
        val = np.sort(rng.choice(val, max_val, replace=False))
    height, width = pixels.shape
    if task == "brightness":
        loss_scale = 255.0**2
        preprocessing = {
            "task": "brightness",
            "neighbourhood": [list(p) for p in NEIGHBOURHOOD],
            "inputs": "points 1..4 minus point 0, divided by 255",
            "target": "pixel minus point 0, divided by 255",
            "scale": 255.0,
        }
    else:
        loss_scale = 1.0
        preprocessing = {
            "task": "approx",
            "inputs": "x, y scaled to [-1, 1]",
            "target": "brightness / 255",
            "width": width,
            "height": height,
        }
    return TaskData(
        task=task,
        x_train=torch.from_numpy(inputs[train]),
        y_train=torch.from_numpy(targets[train]),
        x_val=torch.from_numpy(inputs[val]),
        y_val=torch.from_numpy(targets[val]),
        image=source,
        image_shape=(height, width),
        loss_scale=loss_scale,
        seed=seed,
        preprocessing=preprocessing,
    )
