"""MNIST-format IDX files: parsing, validation, the dataset loader, and the optional download."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from netbonsai.data import MnistData, download_mnist, load_mnist, read_idx, write_idx
from netbonsai.data.idx import IDX_DTYPES, parse_idx
from netbonsai.errors import InputError

REPO = Path(__file__).resolve().parents[2]
MNIST_DIR = Path(os.environ.get("NETBONSAI_DATA") or REPO.parent / "shared" / "data" / "mnist")


def idx_bytes(array: np.ndarray, code: int | None = None) -> bytes:
    """The IDX encoding of ``array`` written by hand (independent of write_idx)."""
    if code is None:
        code = next(c for c, (dt, _) in IDX_DTYPES.items() if dt == array.dtype.newbyteorder(">"))
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_dataset(folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = True, seed: int = 0,
                  size: tuple[int, int] = (4, 3)) -> Path:
    """A tiny MNIST-layout folder: random uint8 images, labels 0..9."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, *size), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write(folder / f"{split}-images-idx3-ubyte{ext}", idx_bytes(images), gz)
        write(folder / f"{split}-labels-idx1-ubyte{ext}", idx_bytes(labels), gz)
    return folder


# ---------------------------------------------------------------------------------- real MNIST
@pytest.fixture(scope="module")
def mnist() -> MnistData:
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists() and not (MNIST_DIR / "train-images-idx3-ubyte").exists():
        pytest.skip(f"MNIST not found at {MNIST_DIR} (see ../shared/data/README.md or set NETBONSAI_DATA)")
    return load_mnist(MNIST_DIR)


def test_real_mnist_shapes_and_types(mnist: MnistData) -> None:
    assert mnist.x_train.shape == (60000, 784) and mnist.x_test.shape == (10000, 784)
    assert mnist.y_train.shape == (60000,) and mnist.y_test.shape == (10000,)
    assert mnist.x_train.dtype == torch.float32 and mnist.y_train.dtype == torch.int64
    assert mnist.n_classes == 10 and mnist.n_features == 784


def test_real_mnist_values_and_label_histogram(mnist: MnistData) -> None:
    for x in (mnist.x_train, mnist.x_test):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert 0.10 < float(x.mean()) < 0.15  # MNIST's mean pixel is about 0.13
    train_counts = torch.bincount(mnist.y_train, minlength=10)
    test_counts = torch.bincount(mnist.y_test, minlength=10)
    assert len(train_counts) == 10 and len(test_counts) == 10
    assert int(train_counts.min()) > 5000 and int(train_counts.max()) < 7000  # every digit 9-11 %
    assert int(test_counts.min()) > 850 and int(test_counts.max()) < 1200
    assert int(train_counts[1]) == 6742 and int(test_counts[1]) == 1135  # the canonical counts


def test_real_mnist_unflattened_and_raw_reader(mnist: MnistData) -> None:
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert images.flags.writeable  # a fresh copy, not the cached array
    np.testing.assert_allclose(mnist.x_test[0].numpy(), images[0].reshape(-1) / 255.0, rtol=1e-6)
    square = load_mnist(MNIST_DIR, flatten=False)
    assert square.x_test.shape == (10000, 1, 28, 28)
    assert torch.equal(square.x_test.reshape(10000, -1), mnist.x_test)


def test_data_root_from_environment(mnist: MnistData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETBONSAI_DATA", str(MNIST_DIR))
    assert torch.equal(load_mnist().y_test, mnist.y_test)


# ---------------------------------------------------------------------------------- read_idx
@pytest.mark.parametrize("code", sorted(IDX_DTYPES))
def test_every_dtype_code_raw_and_gzip_parse_identically(tmp_path: Path, code: int) -> None:
    dtype = IDX_DTYPES[code][0]
    rng = np.random.default_rng(code)
    if dtype.kind == "f":
        array = rng.standard_normal((3, 4, 5)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True).astype(dtype)
    data = idx_bytes(array, code)
    raw = read_idx(write(tmp_path / "a.idx", data))
    zipped = read_idx(write(tmp_path / "b.idx", data, gz=True))  # no .gz in the name: detected by content
    for parsed in (raw, zipped):
        assert parsed.shape == (3, 4, 5)
        assert parsed.dtype == dtype.newbyteorder("=")  # native byte order
        np.testing.assert_array_equal(parsed, array)


def test_one_and_four_dimensions(tmp_path: Path) -> None:
    vector = np.arange(7, dtype=np.uint8)
    assert read_idx(write(tmp_path / "v", idx_bytes(vector))).tolist() == list(range(7))
    block = np.arange(2 * 3 * 4 * 5, dtype=np.int32).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "b", idx_bytes(block))), block)


def test_write_idx_round_trip(tmp_path: Path) -> None:
    array = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    path = write_idx(tmp_path / "x-idx2-float.gz", array)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(path), array)
    assert read_idx(path).flags.writeable
    with pytest.raises(InputError, match="cannot store dtype"):
        write_idx(tmp_path / "bad", np.zeros(3, dtype=np.int64))


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    path = write(tmp_path / "f", idx_bytes(np.zeros(3, dtype=np.uint8)))
    assert read_idx(path).tolist() == [0, 0, 0]
    write(path, idx_bytes(np.ones(4, dtype=np.uint8)))
    assert read_idx(path).tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file(tmp_path: Path, gz: bool) -> None:
    data = idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))
    path = write(tmp_path / "t", data[:-7], gz)
    with pytest.raises(InputError, match=r"truncated: expected 60 bytes of data for shape \(3, 4, 5\), got 53") as err:
        read_idx(path)
    assert str(tmp_path / "t") in str(err.value)


def test_truncated_header(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="truncated header"):
        read_idx(write(tmp_path / "h", bytes([0, 0, 8, 3, 0, 0, 0, 2])))
    with pytest.raises(InputError, match="not an IDX file"):
        read_idx(write(tmp_path / "empty", b""))


@pytest.mark.parametrize("gz", [False, True])
def test_trailing_bytes(tmp_path: Path, gz: bool) -> None:
    data = idx_bytes(np.arange(6, dtype=np.int16).reshape(2, 3)) + b"junk"
    with pytest.raises(InputError, match="4 trailing bytes after the data: expected 12 bytes"):
        read_idx(write(tmp_path / "x", data, gz))


def test_bad_magic_and_unknown_type_code(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(InputError, match="bad magic number 0x01000802"):
        read_idx(write(tmp_path / "a", b"\x01" + good[1:]))
    with pytest.raises(InputError, match="unknown data type code 0x0A"):
        read_idx(write(tmp_path / "b", good[:2] + b"\x0a" + good[3:]))
    with pytest.raises(InputError, match="zero dimensions"):
        read_idx(write(tmp_path / "c", bytes([0, 0, 8, 0])))
    with pytest.raises(InputError, match="bad magic number"):  # a PNG, say
        read_idx(write(tmp_path / "d.png", b"\x89PNG\r\n\x1a\n" + bytes(20)))


def test_corrupt_gzip(tmp_path: Path) -> None:
    zipped = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
    with pytest.raises(InputError, match=r"corrupt gzip data .*truncated download") as err:
        read_idx(write(tmp_path / "cut.gz", zipped[: len(zipped) // 2]))
    assert "cut.gz" in str(err.value)
    broken = bytearray(zipped)
    broken[30:40] = b"\xff" * 10  # damage the deflate stream
    with pytest.raises(InputError, match="corrupt gzip data"):
        read_idx(write(tmp_path / "bad.gz", bytes(broken)))
    with pytest.raises(InputError, match="corrupt gzip data"):  # gzip magic, nothing valid after it
        read_idx(write(tmp_path / "magic-only", b"\x1f\x8b\x00\x00garbage"))


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found") as err:
        read_idx(tmp_path / "nope.gz")
    assert str(tmp_path / "nope.gz") in str(err.value)
    with pytest.raises(InputError, match="not a regular file"):
        read_idx(tmp_path)


def test_parse_idx_names_its_source() -> None:
    with pytest.raises(InputError, match="^memory: truncated"):
        parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1]), "memory")


# ---------------------------------------------------------------------------------- load_mnist
@pytest.mark.parametrize("gz", [True, False])
def test_load_synthetic_dataset(tmp_path: Path, gz: bool) -> None:
    folder = write_dataset(tmp_path / "d", gz=gz)
    data = load_mnist(folder)
    assert data.x_train.shape == (12, 12) and data.x_test.shape == (5, 12)
    assert data.y_train.tolist() == [i % 10 for i in range(12)]
    images = read_idx(folder / f"train-images-idx3-ubyte{'.gz' if gz else ''}")
    np.testing.assert_allclose(data.x_train.numpy(), images.reshape(12, -1) / 255.0, rtol=1e-6)
    assert load_mnist(folder, flatten=False).x_train.shape == (12, 1, 4, 3)


def test_dotted_names_and_raw_subfolder(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "d" / "raw", gz=False)
    for path in folder.iterdir():  # train-images-idx3-ubyte -> train-images.idx3-ubyte
        path.rename(path.with_name(path.name.replace("s-idx", "s.idx")))
    assert load_mnist(tmp_path / "d").x_train.shape == (12, 12)


def test_no_root_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NETBONSAI_DATA", raising=False)
    with pytest.raises(InputError, match="pass --data DIR or set NETBONSAI_DATA"):
        load_mnist()


def test_missing_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_mnist(tmp_path / "absent")
    folder = write_dataset(tmp_path / "d")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(InputError, match=r"missing in .*: t10k-labels-idx1-ubyte\[\.gz\]"):
        load_mnist(folder)


def test_count_mismatch(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "d")
    write(folder / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(11, dtype=np.uint8)), gz=True)
    with pytest.raises(InputError, match="train split: 12 images in train-images-idx3-ubyte.gz but 11 labels"):
        load_mnist(folder)


def test_images_must_be_3d_and_labels_1d(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "d")
    write(folder / "t10k-images-idx3-ubyte.gz", idx_bytes(np.zeros((5, 12), dtype=np.uint8)), gz=True)
    with pytest.raises(InputError, match=r"images must be 3-D .* got shape \(5, 12\)"):
        load_mnist(folder)
    folder = write_dataset(tmp_path / "e")
    write(folder / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros((5, 1), dtype=np.uint8)), gz=True)
    with pytest.raises(InputError, match="labels must be 1-D"):
        load_mnist(folder)


def test_label_checks(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "d")
    write(folder / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.array([0, 1, 2, 3, 10], dtype=np.uint8)), gz=True)
    with pytest.raises(InputError, match=r"label 10 does not occur in the training labels \(classes 0\.\.9\)"):
        load_mnist(folder)
    folder = write_dataset(tmp_path / "e")
    write(folder / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.array([0, 1, -2, 3, 4], dtype=np.int8)), gz=True)
    with pytest.raises(InputError, match="negative label -2"):
        load_mnist(folder)


def test_a_corrupt_member_names_its_file(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "d")
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InputError, match="train-images-idx3-ubyte.gz: corrupt gzip"):
        load_mnist(folder)


# ---------------------------------------------------------------------------------- download
def md5s(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_download_from_a_file_url(tmp_path: Path) -> None:
    source = write_dataset(tmp_path / "mirror", seed=3)
    cache = tmp_path / "cache"
    folder = download_mnist("fashion-mnist", cache, base_url=source.as_uri() + "/", md5=md5s(source))
    assert folder == cache / "fashion-mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in source.iterdir())  # no temp files
    assert torch.equal(load_mnist(folder).x_train, load_mnist(source).x_train)
    # files already present are kept: a second call with an unreachable mirror succeeds
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert download_mnist("fashion-mnist", cache, base_url=(tmp_path / "gone").as_uri(), md5=md5s(source)) == folder
    assert stamp == {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_download_replaces_a_damaged_file_and_uses_the_cache_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_dataset(tmp_path / "mirror")
    monkeypatch.setenv("NETBONSAI_CACHE", str(tmp_path / "envcache"))
    folder = download_mnist("anything", base_url=source.as_uri(), md5=md5s(source))
    assert folder == tmp_path / "envcache" / "anything"
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"damaged")
    download_mnist("anything", base_url=source.as_uri(), md5=md5s(source))
    assert md5s(folder) == md5s(source)


def test_download_checksum_mismatch_leaves_no_file(tmp_path: Path) -> None:
    source = write_dataset(tmp_path / "mirror")
    wrong = dict(md5s(source), **{"train-labels-idx1-ubyte.gz": "0" * 32})
    with pytest.raises(InputError, match="train-labels-idx1-ubyte.gz: checksum mismatch"):
        download_mnist("mnist", tmp_path / "cache", base_url=source.as_uri(), md5=wrong)
    assert not (tmp_path / "cache" / "mnist" / "train-labels-idx1-ubyte.gz").exists()
    assert not [p for p in (tmp_path / "cache" / "mnist").iterdir() if p.name.startswith(".")]


def test_download_failures_are_one_line_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="download file:.*train-images-idx3-ubyte.gz failed") as err:
        download_mnist("mnist", tmp_path / "cache", base_url=(tmp_path / "nothing").as_uri())
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="unknown dataset 'cifar'"):
        download_mnist("cifar", tmp_path / "cache")


def test_download_the_real_files_with_known_checksums(tmp_path: Path) -> None:
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST not found at {MNIST_DIR}")
    folder = download_mnist("mnist", tmp_path, base_url=MNIST_DIR.as_uri())  # md5: the known MNIST list
    assert md5s(folder) == md5s(MNIST_DIR)
