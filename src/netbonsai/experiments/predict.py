"""``netbonsai predict``: run a saved image-task model on a new image with its stored preprocessing.

A model file written by ``grow``/``compare``/``baseline`` stores in its ``info`` the task's
``preprocessing`` (for brightness: the neighbourhood of previous pixels and the scaling), the
``loss_scale`` that turns an MSE into the units the run reports, and the training ``config``.
:func:`predict_image` rebuilds the samples of any image from that, evaluates the model, and
returns the loss in the run's units together with the predicted image.

Brightness prediction is one step ahead: every predicted pixel is computed from the *true*
previous pixels (as in training and in the reported loss), not from earlier predictions.
Pixels without a full neighbourhood (the first row, the two left and the right column) are
not predicted; the predicted image copies them from the input.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import check_output_file, write_bytes
from ..data.images import load_image
from ..data.tasks import ImageSamples, samples_from_preprocessing
from ..errors import InputError
from ..nets.dag import DagNet
from ..nets.io import load
from ..train.losses import evaluate
from .image_runs import LOSS_UNITS


@dataclass
class Prediction:
    """The result of running a model on an image."""

    task: str
    image: str  # where the image came from
    image_shape: tuple[int, int]  # (height, width)
    n_pixels: int  # predicted pixels (= samples)
    loss: float  # mean squared error times loss_scale: the units the run reports
    loss_scale: float
    loss_units: str
    params: int
    predicted: np.ndarray  # (height, width) float64 brightness in [0, 255]


def preprocessing_of(net: DagNet, where: str = "the model") -> tuple[dict, float]:
    """The stored preprocessing and loss scale of a model, or :class:`InputError` when absent."""
    preprocessing = net.info.get("preprocessing") if isinstance(net.info, dict) else None
    if not isinstance(preprocessing, dict) or preprocessing.get("task") not in LOSS_UNITS:
        task = net.info.get("task") if isinstance(net.info, dict) else None
        what = f" (its task is {task!r})" if task and task not in LOSS_UNITS else ""
        raise InputError(
            f"{where} has no image-task preprocessing stored{what}; predict needs a model saved by "
            "'netbonsai grow', 'compare' or 'baseline' (brightness or approx)"
        )
    task = preprocessing["task"]
    scale = net.info.get("loss_scale")
    if scale is None:  # files that store the preprocessing but not the loss scale
        scale = float(preprocessing.get("scale", 255.0)) ** 2 if task == "brightness" else 1.0
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not np.isfinite(scale) or scale <= 0:
        raise InputError(f"{where} stores an invalid loss scale {scale!r}")
    return preprocessing, float(scale)


def predict_samples(net: DagNet, samples: ImageSamples) -> np.ndarray:
    """Model outputs ``(n, n_out)`` for the samples (float32, no gradients)."""
    with torch.no_grad():
        return net(torch.from_numpy(samples.inputs)).cpu().numpy()


def predict_image(model: DagNet | str | os.PathLike, image: str | os.PathLike | None) -> Prediction:
    """Run ``model`` (a :class:`DagNet` or a model file / run directory) on ``image``.

    The loss is ``evaluate(net, inputs, targets, "mse") * loss_scale``, exactly how the run
    computes the losses it reports. Raises :class:`InputError` for a missing or corrupt model,
    a model without stored preprocessing, an unreadable or too small image, or a model whose
    input width does not match the preprocessing.
    """
    where = "the model"
    if not isinstance(model, DagNet):
        where = f"model {model}"
        model = load(model)
    net = model
    if net.population_size != 1:
        raise InputError(f"predict needs a network with population size 1, got {net.population_size}")
    preprocessing, loss_scale = preprocessing_of(net, where)
    pixels, source = load_image(image)
    samples = samples_from_preprocessing(pixels, preprocessing)
    if samples.inputs.shape[1] != net.n_in or samples.targets.shape[1] != net.n_out:
        raise InputError(
            f"{where} has {net.n_in} inputs and {net.n_out} outputs, but its {preprocessing['task']} "
            f"preprocessing gives {samples.inputs.shape[1]} inputs and {samples.targets.shape[1]} output"
        )
    x, y = torch.from_numpy(samples.inputs), torch.from_numpy(samples.targets)
    with torch.no_grad():
        loss = float(evaluate(net, x, y, "mse")[0]) * loss_scale
    predicted = pixels.astype(np.float64).copy()
    predicted[samples.rows, samples.cols] = samples.pixels(predict_samples(net, samples)).reshape(
        predicted[samples.rows, samples.cols].shape
    )
    return Prediction(
        task=samples.task,
        image=source,
        image_shape=(int(pixels.shape[0]), int(pixels.shape[1])),
        n_pixels=int(samples.inputs.shape[0]),
        loss=loss,
        loss_scale=loss_scale,
        loss_units=LOSS_UNITS[samples.task],
        params=net.num_params(),
        predicted=np.clip(predicted, 0.0, 255.0),
    )


def check_png_path(path: str | os.PathLike) -> Path:
    """A PNG output path whose folder exists (checked before any work is done)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"the predicted image is written as PNG; give a .png path, got {path}")
    return check_output_file(path)


def write_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a [0, 255] grayscale image as an 8-bit PNG, atomically."""
    from PIL import Image

    path = check_png_path(path)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return write_bytes(path, buffer.getvalue())
