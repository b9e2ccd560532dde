"""Loading grayscale images from files or from scikit-image's bundled test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

# Images shipped inside the scikit-image wheel (no download needed).
BUNDLED = ("camera", "moon", "brick", "grass", "gravel", "coins", "cell", "astronaut", "chelsea", "coffee", "rocket")
DEFAULT_IMAGE = "skimage:camera"


def load_image(source: str | Path | None = None) -> tuple[np.ndarray, str]:
    """A grayscale image as float64 brightness in [0, 255], and a name describing its source.

    ``source`` is a path to any image file Pillow reads, ``skimage:NAME`` for one of scikit-image's
    bundled images (``camera``, ``moon``, ``astronaut``, ...), or None for ``skimage:camera``.
    Colour images are converted to luminance.
    """
    source = DEFAULT_IMAGE if source is None else str(source)
    if source.startswith("skimage:"):
        pixels = _bundled(source.split(":", 1)[1])
    else:
        pixels = _read_file(Path(source))
    if pixels.ndim == 3:
        pixels = _to_gray(pixels)
    if pixels.ndim != 2 or pixels.size == 0:
        raise InputError(f"{source}: not a 2-D image (shape {pixels.shape})")
    if not np.isfinite(pixels).all():
        raise InputError(f"{source}: image contains NaN or Inf values")
    return pixels, source


def _bundled(name: str) -> np.ndarray:
    if name not in BUNDLED:
        raise InputError(f"unknown bundled image {name!r}; choose one of {', '.join(BUNDLED)}")
    import skimage.data

    image = getattr(skimage.data, name)()
    return _scale_to_255(np.asarray(image))


def _read_file(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise InputError(f"image file not found: {path}")
    if path.is_dir():
        raise InputError(f"expected an image file, got a directory: {path}")
    try:
        with Image.open(path) as handle:
            handle.load()
            if handle.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1"):
                handle = handle.convert("RGB") if handle.mode != "1" else handle.convert("L")
            array = np.asarray(handle)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InputError(f"not a readable image: {path} ({error.__class__.__name__})") from None
    return _scale_to_255(array)


def _scale_to_255(array: np.ndarray) -> np.ndarray:
    """Brightness in [0, 255] whatever the storage type (8/16-bit integers, floats in [0, 1])."""
    if array.dtype == np.bool_:
        return array.astype(np.float64) * 255.0
    if np.issubdtype(array.dtype, np.integer):
        top = 255.0 if array.max(initial=0) <= 255 else float(np.iinfo(array.dtype).max)
        return array.astype(np.float64) * (255.0 / top)
    array = array.astype(np.float64)
    finite = array[np.isfinite(array)]
    if finite.size and finite.max() <= 1.0:
        return array * 255.0
    return array


def _to_gray(array: np.ndarray) -> np.ndarray:
    if array.shape[-1] in (3, 4):
        rgb = array[..., :3]
        return rgb @ np.array([0.2125, 0.7154, 0.0721])  # ITU-R 709 luminance, as skimage.color.rgb2gray
    if array.shape[-1] == 1:
        return array[..., 0]
    raise InputError(f"image has {array.shape[-1]} channels; expected gray, RGB or RGBA")
