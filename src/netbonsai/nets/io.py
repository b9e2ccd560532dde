"""Saving and loading a population-1 :class:`DagNet` as one safetensors file.

The file holds the live synapses as COO tensors (``sources``, ``targets``: int64, ``weights``:
float32), the ``biases`` of the non-input nodes (float32), and the normalization vectors
``in_shift``, ``in_scale``, ``out_shift``, ``out_scale`` (float32). The safetensors metadata
key ``"netbonsai"`` holds JSON: ``format``, ``version``, ``n_in``, ``n_out``, ``n_nodes``,
``activations``, ``roles``, ``params`` and ``info`` (free-form metadata).

Writes are atomic (temp file, fsync, rename), and :func:`load` validates everything, raising
:class:`ModelFileError` with one line naming the path for any problem.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from ..atomic import write_bytes
from ..errors import InputError, ModelFileError
from .activations import ACTIVATIONS
from .dag import ROLES, DagNet

FORMAT = "netbonsai-dagnet"
VERSION = 1
METADATA_KEY = "netbonsai"
RUN_MODEL_NAME = "model"  # a run directory stores its model as DIR/model

_INT_TENSORS = ("sources", "targets")
_FLOAT_TENSORS = ("weights", "biases", "in_shift", "in_scale", "out_shift", "out_scale")


# ---------------------------------------------------------------------- save
def save(net: DagNet, path: str | os.PathLike, info: dict | None = None) -> Path:
    """Write ``net`` (population size 1) to exactly ``path``, atomically; return the path.

    ``info`` is merged over ``net.info`` into the file's metadata (it must be
    JSON-serialisable); ``net`` itself is not modified. On failure no file, partial or
    temporary, is left behind and :class:`InputError` (:class:`ModelFileError` for I/O) is raised.
    """
    path = Path(path)
    if net.population_size != 1:
        raise InputError(f"save() needs a network with population size 1, got {net.population_size}")
    merged = {**net.info, **(info or {})}
    sources, targets, weights = net.edges(0)
    if (targets < net.n_in).any():  # DagNet tolerates them, but they mean nothing: refuse
        raise InputError("cannot save a network with a synapse into an input node")
    tensors = {
        "sources": torch.as_tensor(sources, dtype=torch.int64),
        "targets": torch.as_tensor(targets, dtype=torch.int64),
        "weights": torch.as_tensor(weights).to(torch.float32),
        "biases": net.bias.detach()[0, net.n_in :].to("cpu", torch.float32),
    }
    for name in ("in_shift", "in_scale", "out_shift", "out_scale"):
        tensors[name] = getattr(net, name).detach().to("cpu", torch.float32)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "n_in": net.n_in,
        "n_out": net.n_out,
        "n_nodes": net.n_nodes,
        "activations": list(net.activations),
        "roles": list(net.roles),
        "params": net.num_params(),
        "info": merged,
    }
    try:
        metadata = json.dumps(header, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"model info is not JSON-serialisable: {exc}") from None
    data = _st_save({k: v.contiguous() for k, v in tensors.items()}, metadata={METADATA_KEY: metadata})
    _write_atomic(path, data)
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    """Atomic write; I/O failures become :class:`ModelFileError`."""
    try:
        write_bytes(path, data)
    except InputError as exc:
        raise ModelFileError(f"cannot write model file {path}: {exc}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot write model file {path}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------- load
def load(path: str | os.PathLike) -> DagNet:
    """Read a model file written by :func:`save` (or a run directory holding ``model``).

    Everything is validated; any problem raises :class:`ModelFileError` with one line naming
    the path. The result has population size 1, ``info`` from the file, and exactly the saved
    weights, mask, biases and normalization.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / RUN_MODEL_NAME).is_file():
            raise ModelFileError(f"{path} is a directory without a {RUN_MODEL_NAME!r} model file")
        path = path / RUN_MODEL_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"model file {path} does not exist") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    try:
        return _decode(data)
    except ModelFileError as exc:
        raise ModelFileError(f"invalid model file {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any other failure is still a bad file
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"invalid model file {path}: {message}") from None


class _Bad(ModelFileError):
    """A problem found while decoding (the path is added by :func:`load`)."""


def _decode(data: bytes) -> DagNet:
    metadata = _read_metadata(data)
    try:
        tensors = _st_load(data)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _Bad(f"not a valid safetensors file ({reason})") from None
    header = _parse_header(metadata)
    n_in, n_out, n = header["n_in"], header["n_out"], header["n_nodes"]
    expected = {
        "biases": n - n_in,
        "in_shift": n_in,
        "in_scale": n_in,
        "out_shift": n_out,
        "out_scale": n_out,
    }
    for name in _INT_TENSORS + _FLOAT_TENSORS:
        if name not in tensors:
            raise _Bad(f"missing tensor {name!r}")
        tensor = tensors[name]
        dtype = torch.int64 if name in _INT_TENSORS else torch.float32
        if tensor.dtype != dtype or tensor.dim() != 1:
            raise _Bad(f"tensor {name!r} must be 1-D {dtype}, got {tuple(tensor.shape)} {tensor.dtype}")
        if name in _FLOAT_TENSORS and not bool(torch.isfinite(tensor).all()):
            raise _Bad(f"tensor {name!r} holds NaN or Inf")
        if name in expected and tensor.numel() != expected[name]:
            raise _Bad(f"tensor {name!r} has {tensor.numel()} values, expected {expected[name]}")
    extra = sorted(set(tensors) - set(_INT_TENSORS + _FLOAT_TENSORS))
    if extra:
        raise _Bad(f"unexpected tensor {extra[0]!r}")
    sources, targets, weights = tensors["sources"], tensors["targets"], tensors["weights"]
    if not sources.numel() == targets.numel() == weights.numel():
        raise _Bad(
            f"sources, targets and weights differ in length "
            f"({sources.numel()}, {targets.numel()}, {weights.numel()})"
        )
    if sources.numel():
        low = min(int(sources.min()), int(targets.min()))
        high = max(int(sources.max()), int(targets.max()))
        if low < 0 or high >= n:
            raise _Bad(f"a synapse refers to a node outside 0..{n - 1}")
        if bool((sources >= targets).any()):
            raise _Bad("a synapse has source >= target: nodes are not in topological order")
        if bool((targets < n_in).any()):
            raise _Bad("a synapse enters an input node")
        keys = sources * n + targets
        if torch.unique(keys).numel() != keys.numel():
            raise _Bad("a synapse is listed twice")
    for name in ("in_scale", "out_scale"):
        if bool((tensors[name] == 0).any()):
            raise _Bad(f"tensor {name!r} holds a zero scale")

    dtype = torch.get_default_dtype()
    weight = torch.zeros(1, n, n, dtype=dtype)
    mask = torch.zeros(1, n, n, dtype=torch.bool)
    bias = torch.zeros(1, n, dtype=dtype)
    weight[0, sources, targets] = weights.to(dtype)
    mask[0, sources, targets] = True
    bias[0, n_in:] = tensors["biases"].to(dtype)
    try:
        net = DagNet(n_in, n_out, weight, mask, bias, header["activations"], header["roles"])
        net.set_normalization(*(tensors[k] for k in ("in_shift", "in_scale", "out_shift", "out_scale")))
    except InputError as exc:
        raise _Bad(str(exc)) from None
    params = header.get("params")
    if params is not None and params != net.num_params():
        raise _Bad(f"'params' says {params} but the synapses give {net.num_params()}")
    net.info = header["info"]
    return net


def _read_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` dict of a safetensors byte string (header: u64 length + JSON)."""
    if len(data) < 8:
        raise _Bad("not a safetensors file (too short)")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise _Bad("not a safetensors file (header length exceeds the file; truncated?)")
    try:
        header = json.loads(data[8 : 8 + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _Bad("not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise _Bad("not a safetensors file (header is not a JSON object)")
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or METADATA_KEY not in metadata:
        raise _Bad(f"no {METADATA_KEY!r} metadata: not a netbonsai model file")
    return metadata


def _parse_header(metadata: dict[str, str]) -> dict[str, Any]:
    """Decode and validate the ``netbonsai`` metadata JSON."""
    try:
        header = json.loads(metadata[METADATA_KEY])
    except (TypeError, json.JSONDecodeError):
        raise _Bad(f"{METADATA_KEY!r} metadata is not valid JSON") from None
    if not isinstance(header, dict):
        raise _Bad(f"{METADATA_KEY!r} metadata is not a JSON object")
    if header.get("format") != FORMAT:
        raise _Bad(f"format is {header.get('format')!r}, expected {FORMAT!r}")
    if header.get("version") != VERSION:
        raise _Bad(f"unsupported format version {header.get('version')!r} (this netbonsai reads {VERSION})")
    for key in ("n_in", "n_out", "n_nodes"):
        value = header.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _Bad(f"{key!r} must be a positive integer, got {value!r}")
    n_in, n_out, n = header["n_in"], header["n_out"], header["n_nodes"]
    if n_in + n_out > n:
        raise _Bad(f"n_in={n_in} plus n_out={n_out} exceeds n_nodes={n}")
    for key, known in (("activations", ACTIVATIONS), ("roles", ROLES)):
        values = header.get(key)
        if not isinstance(values, list) or len(values) != n:
            raise _Bad(f"{key!r} must be a list of {n} names")
        for value in values:
            if not isinstance(value, str) or value not in known:
                raise _Bad(f"unknown {key[:-1]} {value!r}; known: {', '.join(known)}")
    info = header.get("info", {})
    if not isinstance(info, dict):
        raise _Bad(f"'info' must be a JSON object, got {type(info).__name__}")
    header["info"] = info
    params = header.get("params")
    if params is not None and (not isinstance(params, int) or isinstance(params, bool) or params < 0):
        raise _Bad(f"'params' must be a non-negative integer, got {params!r}")
    return header


# ---------------------------------------------------------------------- in-memory state (checkpoints)
def net_to_state(net: DagNet) -> dict[str, Any]:
    """A plain dict of tensors and JSON values describing ``net`` exactly (any population size).

    Suitable for ``torch.save`` and for ``torch.load(..., weights_only=True)``.
    """
    return {
        "n_in": net.n_in,
        "n_out": net.n_out,
        "weight": net.weight.detach().cpu().clone(),
        "mask": net.mask.cpu().clone(),
        "bias": net.bias.detach().cpu().clone(),
        "activations": list(net.activations),
        "roles": list(net.roles),
        "normalization": [getattr(net, n).detach().cpu().clone() for n in ("in_shift", "in_scale", "out_shift", "out_scale")],
        "info": json.dumps(net.info),
    }


def net_from_state(state: dict[str, Any]) -> DagNet:
    """Inverse of :func:`net_to_state`."""
    net = DagNet(
        state["n_in"], state["n_out"], state["weight"], state["mask"], state["bias"],
        state["activations"], state["roles"],
    )
    net.set_normalization(*state["normalization"])
    net.info = json.loads(state["info"])
    return net
