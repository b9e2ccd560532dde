"""The image tasks of paper 000: brightness prediction and image approximation.

Brightness prediction: for each pixel ``*`` at column x, row y, five previous points
0 = (x-1, y), 1 = (x, y-1), 2 = (x-1, y-1), 3 = (x+1, y-1), 4 = (x-2, y). Inputs are points 1..4
minus point 0, divided by 255; the target is ``*`` minus point 0, divided by 255. The loss is
reported as the paper does: mean squared error in 8-bit units (MSE * 255**2).

Image approximation: f(x, y) -> brightness in [0, 1] with x, y scaled to [-1, 1]; loss is the MSE.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .checks import require_finite
from .images import load_image
from .task import Task, TaskData

TASKS = ("brightness", "approx")
# (dx, dy) of points 0..4 relative to the predicted pixel
NEIGHBOURHOOD = ((-1, 0), (0, -1), (-1, -1), (1, -1), (-2, 0))
MIN_SAMPLES = 10


def brightness_samples(
    image: np.ndarray, neighbourhood=NEIGHBOURHOOD, scale: float = 255.0
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(n, len(neighbourhood) - 1)`` and targets ``(n, 1)`` of brightness prediction.

    ``image`` holds brightness in [0, 255]. Point 0 of ``neighbourhood`` (``(dx, dy)`` offsets of
    previous pixels) is the reference: inputs are the other points minus it, the target is the
    pixel minus it, all divided by ``scale``. Pixels are taken row by row, over every position
    whose neighbourhood lies inside the image (see :func:`brightness_positions`).
    """
    inputs, targets, *_ = _brightness(image, neighbourhood, scale)
    return inputs, targets


def check_neighbourhood(neighbourhood) -> tuple[tuple[int, int], ...]:
    """``neighbourhood`` as a tuple of ``(dx, dy)`` int pairs of *previous* pixels (at least two)."""
    try:
        points = tuple((int(dx), int(dy)) for dx, dy in neighbourhood)
        exact = all(float(a) == int(a) and float(b) == int(b) for a, b in neighbourhood)
    except (TypeError, ValueError):
        raise InputError(f"a neighbourhood is a list of (dx, dy) integer pairs, got {neighbourhood!r}") from None
    if not exact or len(points) < 2:
        raise InputError(f"a neighbourhood is at least two (dx, dy) integer pairs, got {neighbourhood!r}")
    for dx, dy in points:
        if not (dy < 0 or (dy == 0 and dx < 0)):
            raise InputError(f"neighbourhood point ({dx}, {dy}) is not a previous pixel (row above, or left)")
    return points


def brightness_positions(shape: tuple[int, int], neighbourhood=NEIGHBOURHOOD) -> tuple[slice, slice]:
    """Rows and columns of the predicted pixels: where the whole neighbourhood is inside the image."""
    points = check_neighbourhood(neighbourhood)
    height, width = shape
    dxs = [dx for dx, _ in points] + [0]
    dys = [dy for _, dy in points] + [0]
    rows = slice(-min(dys), height - max(dys))
    cols = slice(-min(dxs), width - max(dxs))
    if rows.stop <= rows.start or cols.stop <= cols.start:
        need = f"{max(dxs) - min(dxs) + 1}x{max(dys) - min(dys) + 1}"
        why = (" (two pixels to the left, one to the right and one row above each predicted pixel)"
               if points == NEIGHBOURHOOD else "")
        raise InputError(f"image is {width}x{height} pixels; brightness prediction needs at least {need}{why}")
    return rows, cols


def _brightness(image: np.ndarray, neighbourhood, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, slice, slice]:
    """Inputs, targets and the reference brightness (point 0) of every predicted pixel, and the
    rows and columns of the predicted pixels."""
    points = check_neighbourhood(neighbourhood)
    image = _checked_image(image)
    ys, xs = brightness_positions(image.shape, points)

    def point(dx: int, dy: int) -> np.ndarray:
        return image[ys.start + dy : ys.stop + dy, xs.start + dx : xs.stop + dx].reshape(-1)

    base = point(*points[0])
    inputs = np.stack([point(*offset) - base for offset in points[1:]], axis=1) / scale
    target = (image[ys, xs].reshape(-1) - base)[:, None] / scale
    return inputs.astype(np.float32), target.astype(np.float32), base, ys, xs


@dataclass
class ImageSamples:
    """A task's samples of one whole image, with what is needed to turn outputs back into pixels.

    ``rows``/``cols`` are the slices of the predicted pixels (row-major sample order); the
    brightness a sample's output ``o`` stands for is ``offset + o * scale``.
    """

    task: str
    inputs: np.ndarray  # (n, n_in) float32
    targets: np.ndarray  # (n, 1) float32
    rows: slice
    cols: slice
    offset: np.ndarray  # (n,) float64
    scale: float

    def pixels(self, outputs: np.ndarray) -> np.ndarray:
        """Brightness (0..255 scale, not clipped) of the predicted pixels, ``(n,)``."""
        return self.offset + np.asarray(outputs, dtype=np.float64).reshape(-1) * self.scale


def samples_from_preprocessing(image: np.ndarray, preprocessing: dict) -> ImageSamples:
    """Rebuild a task's samples of ``image`` from the ``preprocessing`` a model file stores.

    ``preprocessing`` is :attr:`TaskData.preprocessing`: ``task`` ``brightness`` (with
    ``neighbourhood`` and ``scale``) or ``approx`` (coordinates from the image's own size).
    """
    if not isinstance(preprocessing, dict) or preprocessing.get("task") not in TASKS:
        raise InputError(f"unknown preprocessing {preprocessing!r}: expected a task of {', '.join(TASKS)}")
    if preprocessing["task"] == "brightness":
        neighbourhood = preprocessing.get("neighbourhood", NEIGHBOURHOOD)
        scale = preprocessing.get("scale", 255.0)
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not np.isfinite(scale) or scale <= 0:
            raise InputError(f"preprocessing scale must be a positive number, got {scale!r}")
        inputs, targets, base, rows, cols = _brightness(image, neighbourhood, float(scale))
        return ImageSamples("brightness", inputs, targets, rows, cols, base, float(scale))
    inputs, targets = approx_samples(image)
    height, width = image.shape
    return ImageSamples("approx", inputs, targets, slice(0, height), slice(0, width),
                        np.zeros(len(inputs)), 255.0)


def _checked_image(image: np.ndarray) -> np.ndarray:
    """A 2-D image without NaN or Inf (brightness is computed from it as it is)."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"expected a 2-D grayscale image, got shape {image.shape}")
    require_finite("image", image)
    return image


def approx_samples(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(n, 2)`` = (x, y) in [-1, 1] and targets ``(n, 1)`` = brightness in [0, 1]."""
    image = _checked_image(image)
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
) -> Task:
    """Build a task's samples from an image and split them (seeded) into train and validation.

    ``max_train`` / ``max_val`` keep a seeded random subset of each side (quick presets).
    """
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    for name, value in (("max_train", max_train), ("max_val", max_val)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be a positive number of samples, got {value}")
    pixels, source = load_image(image)
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
    samples = samples_from_preprocessing(pixels, preprocessing)  # what `netbonsai predict` rebuilds too
    inputs, targets = samples.inputs, samples.targets
    if len(inputs) < MIN_SAMPLES:
        raise InputError(f"{source}: the image gives only {len(inputs)} samples; need at least {MIN_SAMPLES}")
    train, val = split_indices(len(inputs), val_fraction, seed)
    rng = np.random.default_rng(seed + 1)
    if max_train is not None and len(train) > max_train:
        train = np.sort(rng.choice(train, max_train, replace=False))
    if max_val is not None and len(val) > max_val:
        val = np.sort(rng.choice(val, max_val, replace=False))
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
