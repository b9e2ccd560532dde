"""MNIST-format data: IDX files (gzip-compressed or raw), a loader, and an optional download.

The IDX format (used by MNIST, Fashion-MNIST, KMNIST, EMNIST) is a 4-byte magic number
``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 dimension sizes, then the payload in
row-major order, big-endian. :func:`read_idx` checks every part of that and fails with one
:class:`~netbonsai.errors.InputError` line naming the file and the problem.

:func:`load_mnist` reads the four standard files from a folder (``--data DIR`` on the command
line, or the ``NETBONSAI_DATA`` environment variable). :func:`download_mnist` fetches them into a
cache for users with internet; nothing else in netbonsai ever downloads.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import math
import os
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from ..atomic import atomic_open
from ..errors import InputError

DATA_ENV = "NETBONSAI_DATA"
CACHE_ENV = "NETBONSAI_CACHE"

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> (numpy dtype, big-endian), name for messages
IDX_DTYPES: dict[int, tuple[np.dtype, str]] = {
    0x08: (np.dtype(">u1"), "unsigned byte"),
    0x09: (np.dtype(">i1"), "signed byte"),
    0x0B: (np.dtype(">i2"), "short"),
    0x0C: (np.dtype(">i4"), "int"),
    0x0D: (np.dtype(">f4"), "float"),
    0x0E: (np.dtype(">f8"), "double"),
}

# role -> (file stem, idx variant); accepted names are "<stem>-<variant>", "<stem>.<variant>", each
# optionally with ".gz"
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images", "idx3-ubyte"),
    "train_labels": ("train-labels", "idx1-ubyte"),
    "test_images": ("t10k-images", "idx3-ubyte"),
    "test_labels": ("t10k-labels", "idx1-ubyte"),
}

# Known datasets in the MNIST layout: mirrors (tried in order) and md5 of each gzip file.
DATASETS: dict[str, dict] = {
    "mnist": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/"],
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    },
    "fashion-mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    },
    "kmnist": {
        "mirrors": ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
        "md5": {
            "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
            "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
            "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
            "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
        },
    },
}
DATASET_ALIASES = {"fashion": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist"}


# ---------------------------------------------------------------------------------- IDX parsing
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzip-compressed or raw, detected by content) into a native-endian array.

    Raises :class:`InputError` naming the file for a missing or unreadable file, a corrupt gzip
    stream, a bad magic number or type code, or a payload whose size differs from what the
    header announces (truncated file or trailing bytes). The returned array is a fresh copy.
    """
    return _read_idx_cached(*_cache_key(path)).copy()


def _cache_key(path: str | os.PathLike) -> tuple[str, int, int]:
    file = Path(path)
    try:
        stat = file.stat()
    except FileNotFoundError:
        raise InputError(f"{file}: file not found") from None
    except OSError as exc:
        raise InputError(f"{file}: cannot read: {exc.strerror or exc}") from None
    if not file.is_file():
        raise InputError(f"{file}: not a regular file")
    return str(file.resolve()), stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """Parse ``path``; keyed by (path, mtime, size) so an edited file is read again. Read-only result."""
    array = parse_idx(_file_bytes(Path(path)), path)
    array.flags.writeable = False
    return array


def _file_bytes(file: Path) -> bytes:
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InputError(f"{file}: cannot read: {exc.strerror or exc}") from None
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except EOFError:
        raise InputError(f"{file}: corrupt gzip data (compressed stream ends early; truncated download?)") from None
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise InputError(f"{file}: corrupt gzip data ({exc})") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the (already decompressed) bytes of an IDX file; ``name`` is used in error messages."""
    if len(data) < 4:
        raise InputError(f"{name}: not an IDX file (only {len(data)} bytes, no 4-byte magic number)")
    if data[0] != 0 or data[1] != 0:
        raise InputError(f"{name}: bad magic number 0x{data[:4].hex()} (an IDX file starts with 0x0000; "
                         "not an IDX file, or a corrupt one)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise InputError(f"{name}: bad magic number 0x{data[:4].hex()}: unknown data type code 0x{code:02X} "
                         f"(known: {known})")
    if ndim == 0:
        raise InputError(f"{name}: bad magic number 0x{data[:4].hex()}: zero dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise InputError(f"{name}: truncated header: expected {header} bytes for {ndim} dimensions, got {len(data)}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype, _ = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    got = len(data) - header
    if got < expected:
        raise InputError(f"{name}: truncated: expected {expected} bytes of data for shape {dims}, got {got}")
    if got > expected:
        raise InputError(f"{name}: {got - expected} trailing bytes after the data: expected {expected} bytes "
                         f"for shape {dims}, got {got}")
    array = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # a native-endian, writable copy


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (atomically); gzip when ``compress`` or the name ends in .gz."""
    array = np.asarray(array)
    codes = {dt: code for code, (dt, _) in IDX_DTYPES.items()}
    big = array.dtype.newbyteorder(">")
    if big not in codes:
        raise InputError(f"{path}: IDX cannot store dtype {array.dtype}")
    if array.ndim == 0 or array.ndim > 255:
        raise InputError(f"{path}: IDX needs 1 to 255 dimensions, got {array.ndim}")
    payload = bytes([0, 0, codes[big], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload += np.ascontiguousarray(array, dtype=big).tobytes()
    if compress if compress is not None else str(path).endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    with atomic_open(path) as handle:
        handle.write(payload)
    return Path(path)


# ---------------------------------------------------------------------------------- the dataset
@dataclass
class MnistData:
    """An MNIST-format dataset as tensors.

    Images are float32 in [0, 1], shaped ``(N, H*W)`` when loaded with ``flatten=True`` (the default)
    and ``(N, 1, H, W)`` otherwise; labels are int64 class indices.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def n_classes(self) -> int:
        """Number of classes: the largest label (train or test) plus one."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1 if len(self.y_train) else 0

    @property
    def n_features(self) -> int:
        """Inputs per sample (784 for MNIST)."""
        return math.prod(self.x_train.shape[1:])


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else ``$NETBONSAI_DATA``; raises :class:`InputError` if neither."""
    if root is None or str(root) == "":
        root = os.environ.get(DATA_ENV) or None
    if root is None:
        raise InputError(f"no MNIST data folder: pass --data DIR or set {DATA_ENV} to a folder holding "
                         "train-images-idx3-ubyte[.gz] and the three other MNIST files")
    folder = Path(root).expanduser()
    if not folder.exists():
        raise InputError(f"MNIST data folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"MNIST data folder {folder} is not a folder")
    return folder


def find_mnist_files(root: str | os.PathLike) -> dict[str, Path]:
    """Paths of the four standard files in ``root`` (or its ``raw/`` subfolder, torchvision's layout)."""
    folder = Path(root)
    found: dict[str, Path] = {}
    missing = []
    for role, (stem, variant) in MNIST_FILES.items():
        names = [f"{stem}-{variant}", f"{stem}.{variant}"]
        candidates = [d / (n + ext) for d in (folder, folder / "raw") for n in names for ext in ("", ".gz")]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            missing.append(f"{stem}-{variant}[.gz]")
        else:
            found[role] = path
    if missing:
        raise InputError(f"MNIST-format files missing in {folder}: {', '.join(missing)}")
    return found


def load_mnist(root: str | os.PathLike | None = None, flatten: bool = True) -> MnistData:
    """Load an MNIST-format dataset (MNIST, Fashion-MNIST, KMNIST, ...) from a folder of IDX files.

    ``root`` defaults to ``$NETBONSAI_DATA``. The folder must hold ``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or
    ``.gz`` (the ``train-images.idx3-ubyte`` spelling is accepted too). Checks that images are 3-D with
    the same image size in both splits, that image and label counts agree, and that labels are
    non-negative integers whose test classes all occur in training.
    """
    files = find_mnist_files(resolve_data_root(root))
    raw = {role: _read_idx_cached(*_cache_key(path)) for role, path in files.items()}
    for split in ("train", "test"):
        images, labels = raw[f"{split}_images"], raw[f"{split}_labels"]
        ipath, lpath = files[f"{split}_images"], files[f"{split}_labels"]
        if images.ndim != 3:
            raise InputError(f"{ipath}: images must be 3-D (count, height, width), got shape {images.shape}")
        if labels.ndim != 1:
            raise InputError(f"{lpath}: labels must be 1-D, got shape {labels.shape}")
        if images.shape[0] != labels.shape[0]:
            raise InputError(f"{split} split: {images.shape[0]} images in {ipath.name} but "
                             f"{labels.shape[0]} labels in {lpath.name}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise InputError(f"{lpath}: labels must be integers, got {labels.dtype}")
        if labels.size and labels.min() < 0:
            raise InputError(f"{lpath}: negative label {int(labels.min())}")
        if images.size and np.issubdtype(images.dtype, np.integer) and (images.min() < 0 or images.max() > 255):
            raise InputError(f"{ipath}: integer pixel values must lie in 0..255, "
                             f"got {int(images.min())}..{int(images.max())}")
        if images.size and np.issubdtype(images.dtype, np.floating) and (
                not np.isfinite(images).all() or images.min() < 0 or images.max() > 1):
            raise InputError(f"{ipath}: floating-point pixel values must lie in [0, 1]")
    if raw["train_images"].shape[1:] != raw["test_images"].shape[1:]:
        raise InputError(f"image size differs between splits: train {raw['train_images'].shape[1:]}, "
                         f"test {raw['test_images'].shape[1:]}")
    train_classes = int(raw["train_labels"].max()) + 1 if raw["train_labels"].size else 0
    if raw["test_labels"].size and int(raw["test_labels"].max()) >= train_classes:
        raise InputError(f"{files['test_labels']}: label {int(raw['test_labels'].max())} does not occur in "
                         f"the training labels (classes 0..{train_classes - 1})")

    def images(array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array.astype(np.float32))
        if np.issubdtype(array.dtype, np.integer):
            tensor /= 255.0
        return tensor.reshape(len(array), -1) if flatten else tensor.unsqueeze(1)

    def labels(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array.astype(np.int64))

    return MnistData(images(raw["train_images"]), labels(raw["train_labels"]),
                     images(raw["test_images"]), labels(raw["test_labels"]))


# ---------------------------------------------------------------------------------- download
def default_cache_root() -> Path:
    """``$NETBONSAI_CACHE`` if set, else ``~/.cache/netbonsai``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "netbonsai"


def download_mnist(
    dataset: str = "mnist",
    cache_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    md5: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download an MNIST-format dataset into ``<cache_dir>/<dataset>`` and return that folder.

    ``dataset`` is ``"mnist"``, ``"fashion-mnist"`` or ``"kmnist"`` (or any name when ``base_url`` is
    given). ``cache_dir`` defaults to ``$NETBONSAI_CACHE``, else ``~/.cache/netbonsai``. ``base_url``
    replaces the known mirrors (any URL urllib opens, ``file://`` included). ``md5`` maps file names to
    checksums and replaces the known ones (a name it lacks is not checked). Files already present with
    the right checksum are not fetched again; each file is written atomically (temp file + rename),
    so an interrupted download leaves no partial file. Any failure raises :class:`InputError`.
    The result is a folder that :func:`load_mnist` reads.
    """
    key = DATASET_ALIASES.get(dataset.lower(), dataset.lower())
    known = DATASETS.get(key)
    if known is None and base_url is None:
        raise InputError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)} or pass a base URL")
    mirrors = [base_url] if base_url is not None else list(known["mirrors"])
    checksums = dict(md5) if md5 is not None else dict(known["md5"] if known else {})
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    folder = folder / key
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create cache folder {folder}: {exc.strerror or exc}") from None
    for stem, variant in MNIST_FILES.values():
        name = f"{stem}-{variant}.gz"
        target = folder / name
        expected = checksums.get(name)
        if target.is_file() and (expected is None or _md5_file(target) == expected):
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                _fetch(url, target, expected, timeout)
                break
            except InputError as exc:
                errors.append(str(exc))
        else:
            raise InputError("; ".join(errors))
    return folder


def _fetch(url: str, target: Path, expected_md5: str | None, timeout: float) -> None:
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_open(target) as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            if expected_md5 is not None and digest.hexdigest() != expected_md5:
                raise InputError(f"download {url}: checksum mismatch (md5 {digest.hexdigest()}, "
                                 f"expected {expected_md5})")
    except InputError:
        raise
    except urllib.error.HTTPError as exc:
        raise InputError(f"download {url} failed: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise InputError(f"download {url} failed: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # socket errors, timeouts, bad URLs
        raise InputError(f"download {url} failed: {exc}") from None
    except http.client.HTTPException as exc:  # IncompleteRead, RemoteDisconnected, ... (not OSErrors)
        raise InputError(f"download {url} failed: {type(exc).__name__}: {exc}") from None


def _md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
