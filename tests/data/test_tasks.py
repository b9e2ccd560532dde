"""Image tasks: brightness prediction and image approximation samples, splits, image loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netbonsai.data import approx_samples, brightness_samples, load_image, load_task, split_indices
from netbonsai.errors import InputError


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width)).astype(np.float64)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


# ---------------------------------------------------------------------- brightness prediction
def test_brightness_sample_by_hand() -> None:
    # The smallest valid image: one predicted pixel, * = 70 at column 2, row 1.
    #   row 0:  10  20  30  40        point 1 = (x, y-1) = 30, 2 = (x-1, y-1) = 20, 3 = (x+1, y-1) = 40
    #   row 1:  50  60  *70  80       point 0 = (x-1, y) = 60, 4 = (x-2, y) = 50
    image = np.array([[10, 20, 30, 40], [50, 60, 70, 80]], dtype=np.float64)
    inputs, targets = brightness_samples(image)
    assert inputs.shape == (1, 4) and targets.shape == (1, 1)
    assert inputs.dtype == np.float32 and targets.dtype == np.float32
    np.testing.assert_allclose(inputs[0], np.array([-30, -40, -20, -10]) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(targets[0], [10 / 255.0], rtol=1e-6)


def test_brightness_samples_match_the_neighbourhood_everywhere() -> None:
    height, width = 7, 9
    image = random_image(height, width)
    inputs, targets = brightness_samples(image)
    assert inputs.shape == ((height - 1) * (width - 3), 4)
    assert targets.shape == ((height - 1) * (width - 3), 1)
    # samples run row by row over rows 1..H-1 and columns 2..W-2
    for index, (row, col) in enumerate((r, c) for r in range(1, height) for c in range(2, width - 1)):
        p0 = image[row, col - 1]
        expected = [image[row - 1, col], image[row - 1, col - 1], image[row - 1, col + 1], image[row, col - 2]]
        np.testing.assert_allclose(inputs[index], (np.array(expected) - p0) / 255.0, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(targets[index, 0], (image[row, col] - p0) / 255.0, rtol=1e-5, atol=1e-7)
    # one pixel spelled out: row 3, column 4
    index = (3 - 1) * (width - 3) + (4 - 2)
    p0 = image[3, 3]
    assert inputs[index, 0] == pytest.approx((image[2, 4] - p0) / 255.0, rel=1e-6)
    assert inputs[index, 3] == pytest.approx((image[3, 2] - p0) / 255.0, rel=1e-6)
    assert targets[index, 0] == pytest.approx((image[3, 4] - p0) / 255.0, rel=1e-6)


@pytest.mark.parametrize("shape", [(3, 3), (1, 10), (5, 3)])
def test_brightness_needs_at_least_4x2(shape: tuple[int, int]) -> None:
    with pytest.raises(InputError, match="brightness prediction needs"):
        brightness_samples(np.zeros(shape))


# ---------------------------------------------------------------------- image approximation
def test_approx_samples() -> None:
    height, width = 5, 8
    image = random_image(height, width, seed=1)
    inputs, targets = approx_samples(image)
    assert inputs.shape == (height * width, 2)
    np.testing.assert_allclose(inputs.min(axis=0), [-1, -1])
    np.testing.assert_allclose(inputs.max(axis=0), [1, 1])
    np.testing.assert_allclose(targets[:, 0], image.reshape(-1) / 255.0, rtol=1e-6)
    # sample r * W + c is pixel (row r, column c) at x = -1 + 2c/(W-1), y = -1 + 2r/(H-1)
    row, col = 3, 5
    np.testing.assert_allclose(
        inputs[row * width + col], [-1 + 2 * col / (width - 1), -1 + 2 * row / (height - 1)], rtol=1e-6
    )
    assert len({tuple(p) for p in inputs.tolist()}) == height * width
    with pytest.raises(InputError):
        approx_samples(np.zeros((1, 5)))


# ---------------------------------------------------------------------- splits
def test_split_is_seeded_disjoint_and_complete() -> None:
    train, val = split_indices(101, 0.2, seed=3)
    again_train, again_val = split_indices(101, 0.2, seed=3)
    other_train, _ = split_indices(101, 0.2, seed=4)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    assert not np.array_equal(train, other_train)
    assert len(val) == 20 and len(train) == 81
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(101))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(InputError):
            split_indices(10, bad, seed=0)
    with pytest.raises(InputError):
        split_indices(1, 0.5, seed=0)


def test_load_task_split_covers_every_sample(tmp_path: Path) -> None:
    image = random_image(12, 10, seed=2)
    path = write_png(tmp_path / "img.png", image.astype(np.uint8))
    data = load_task("approx", path, val_fraction=0.25, seed=7)
    assert data.image_shape == (12, 10)
    assert data.x_train.shape[0] + data.x_val.shape[0] == 120
    assert data.x_val.shape[0] == 30
    inputs, targets = approx_samples(image)
    train_points = {tuple(p) for p in data.x_train.tolist()}
    val_points = {tuple(p) for p in data.x_val.tolist()}
    assert not train_points & val_points
    assert train_points | val_points == {tuple(p) for p in inputs.tolist()}
    # targets travel with their inputs
    lookup = {tuple(p): t for p, t in zip(inputs.tolist(), targets[:, 0].tolist())}
    for p, t in zip(data.x_val.tolist(), data.y_val[:, 0].tolist()):
        assert lookup[tuple(p)] == t
    # the same seed gives the same split, another seed another one
    again = load_task("approx", path, val_fraction=0.25, seed=7)
    assert np.array_equal(again.x_val.numpy(), data.x_val.numpy())
    other = load_task("approx", path, val_fraction=0.25, seed=8)
    assert not np.array_equal(other.x_val.numpy(), data.x_val.numpy())
    assert data.describe()["n_train"] == 90 and data.describe()["split_seed"] == 7
    assert data.loss_scale == 1.0


def test_load_task_brightness(tmp_path: Path) -> None:
    image = random_image(9, 11, seed=3)
    path = write_png(tmp_path / "img.png", image.astype(np.uint8))
    data = load_task("brightness", path)
    assert data.n_in == 4 and data.n_out == 1
    assert data.x_train.shape[0] + data.x_val.shape[0] == 8 * 8
    assert data.loss_scale == 255.0**2
    inputs, targets = brightness_samples(image)
    train, val = split_indices(len(inputs), 0.2, seed=0)
    np.testing.assert_array_equal(data.x_train.numpy(), inputs[train])
    np.testing.assert_array_equal(data.y_val.numpy(), targets[val])


def test_max_train_subsamples(tmp_path: Path) -> None:
    path = write_png(tmp_path / "img.png", random_image(20, 20, seed=4).astype(np.uint8))
    full = load_task("approx", path)
    small = load_task("approx", path, max_train=50, max_val=10)
    assert small.x_train.shape[0] == 50 and small.x_val.shape[0] == 10
    full_train = {tuple(p) for p in full.x_train.tolist()}
    assert {tuple(p) for p in small.x_train.tolist()} <= full_train
    assert len({tuple(p) for p in small.x_train.tolist()}) == 50
    again = load_task("approx", path, max_train=50, max_val=10)
    assert np.array_equal(again.x_train.numpy(), small.x_train.numpy())
    # a limit above the split size keeps everything
    big = load_task("approx", path, max_train=10_000)
    assert big.x_train.shape == full.x_train.shape
    with pytest.raises(InputError, match="max_train"):
        load_task("approx", path, max_train=0)


def test_too_small_images_are_input_errors(tmp_path: Path) -> None:
    tiny = write_png(tmp_path / "tiny.png", np.full((3, 3), 100, np.uint8))
    with pytest.raises(InputError, match="3x3"):
        load_task("brightness", tiny)
    few = write_png(tmp_path / "few.png", np.full((2, 5), 100, np.uint8))  # 2 samples only
    with pytest.raises(InputError, match="samples"):
        load_task("brightness", few)
    with pytest.raises(InputError, match="unknown task"):
        load_task("segmentation", tiny)


# ---------------------------------------------------------------------- image files
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(InputError, match="not found") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_non_image_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 500).astype(np.uint8).tobytes())
    with pytest.raises(InputError) as info:
        load_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(InputError):
        load_task("brightness", path)


def test_truncated_png(tmp_path: Path) -> None:
    good = write_png(tmp_path / "good.png", random_image(30, 30).astype(np.uint8))
    path = tmp_path / "cut.png"
    path.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory") as info:
        load_image(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_rgb_png_is_converted_to_gray(tmp_path: Path) -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 1] = np.arange(6, dtype=np.uint8)[None, :] * 40
    rgb[..., 2] = 17
    path = write_png(tmp_path / "rgb.png", rgb)
    pixels, name = load_image(path)
    assert name == str(path)
    assert pixels.shape == (4, 6)
    expected = 0.2125 * 200 + 0.7154 * rgb[..., 1].astype(np.float64) + 0.0721 * 17
    np.testing.assert_allclose(pixels, expected, rtol=1e-12)
    # RGBA drops alpha; palette images are expanded
    rgba = np.concatenate([rgb, np.full((4, 6, 1), 9, np.uint8)], axis=2)
    pixels_a, _ = load_image(write_png(tmp_path / "rgba.png", rgba))
    np.testing.assert_allclose(pixels_a, expected, rtol=1e-12)
    # an adaptive palette of 8 holds the 6 colours exactly: their luminance, not the palette indices
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(tmp_path / "pal.png")
    with Image.open(tmp_path / "pal.png") as stored:
        assert stored.mode == "P"
        indices = np.asarray(stored).astype(np.float64)
    pixels_p, _ = load_image(tmp_path / "pal.png")
    np.testing.assert_allclose(pixels_p, expected, rtol=1e-12)
    assert not np.allclose(pixels_p, indices) and not np.allclose(pixels_p, indices * 255.0 / indices.max())


def test_gray_png_keeps_values(tmp_path: Path) -> None:
    gray = random_image(5, 7, seed=5).astype(np.uint8)
    pixels, _ = load_image(write_png(tmp_path / "g.png", gray))
    assert pixels.dtype == np.float64
    np.testing.assert_array_equal(pixels, gray.astype(np.float64))


def test_16_bit_png_is_scaled_to_255(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768, 65535], [1000, 2000, 40000, 65535]], dtype=np.uint16)
    path = write_png(tmp_path / "deep.png", values)
    assert Image.open(path).mode.startswith("I")
    pixels, _ = load_image(path)
    np.testing.assert_allclose(pixels, values.astype(np.float64) * 255.0 / 65535.0, rtol=1e-12)
    assert pixels.max() == 255.0 and pixels[0, 1] == pytest.approx(1.0)


def test_bundled_camera() -> None:
    pixels, name = load_image("skimage:camera")
    assert name == "skimage:camera"
    assert pixels.shape == (512, 512)
    assert 0 <= pixels.min() and pixels.max() <= 255 and pixels.max() > 200
    default, default_name = load_image(None)
    assert default_name == "skimage:camera" and np.array_equal(default, pixels)
    with pytest.raises(InputError, match="unknown bundled image"):
        load_image("skimage:nope")
