"""The Reber grammar classification task of paper 001: is a string in the Reber grammar or not?

The automaton (checked against the authors' code)::

    0 -B-> 1;  1 -T-> 2, 1 -P-> 3;  2 -S-> 2, 2 -X-> 4;  3 -T-> 3, 3 -V-> 5;
    4 -X-> 3, 4 -S-> 6;  5 -P-> 4, 5 -V-> 6;  6 -E-> end

Positive strings are random walks from state 0 to the end, choosing uniformly among a state's
outgoing transitions, kept only if their length is within ``[min_length, max_length]``
(rejection sampling, so the lengths follow the walk's length distribution restricted to the
window; with the defaults 11..53 most strings are short, P(length >= 40) is about 1e-4).

Negative strings are walks of the same graph (drawn exactly like positives, so negatives and
positives have the same length distribution) whose letters are corrupted on ``k >= 1`` interior
transitions (every position except the leading B and the trailing E, so length, first and last
letter carry no label information); ``k`` is geometric with p = 1/2 (1, 2, 3, ... with
probability 1/2, 1/4, 1/8, ...), capped at the number of interior positions, and the ``k``
positions are distinct and uniform. Each negative is, independently,

* with probability ``reber_letters_fraction`` (0.45 by default, as in the authors' data)
  *Reber-letters-only*: each chosen letter is replaced by one of the other four interior Reber
  letters T, P, S, X, V (uniformly), e.g. T <-> P. Such a corruption can by chance give another
  valid Reber string; those are redrawn (walk and corruption, same kind) until rejected;
* otherwise *non-Reber*: each chosen letter is replaced by one of the 19 letters of A-Z that are
  not Reber letters (uniformly), which the grammar always rejects.

Characters are fed to a model as ASCII codes (``ord(c)``, 1..127; 0 is the padding code) into an
embedding of ``vocab_size = 128``.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError

REBER_LETTERS = "BTPSXVE"
# state -> ((letter, next state), ...); next state None is the end (after the final E)
REBER_TRANSITIONS: dict[int, tuple[tuple[str, int | None], ...]] = {
    0: (("B", 1),),
    1: (("T", 2), ("P", 3)),
    2: (("S", 2), ("X", 4)),
    3: (("T", 3), ("V", 5)),
    4: (("X", 3), ("S", 6)),
    5: (("P", 4), ("V", 6)),
    6: (("E", None),),
}
START_STATE = 0
INTERIOR_LETTERS = "TPSXV"  # the letters of the interior transitions (all but B and E)
NON_REBER_LETTERS = "".join(c for c in string.ascii_uppercase if c not in REBER_LETTERS)
VOCAB_SIZE = 128  # ASCII codes
MIN_REBER_LENGTH = 5  # "BTXSE" and "BPVVE" are the shortest Reber strings
MAX_LENGTH_LIMIT = 1000
# rejection sampling must keep at least this fraction of walks (else it would not finish)
MIN_WINDOW_PROBABILITY = 1e-3
_CELL_BUDGET = 1 << 22  # walks * steps drawn per batch (bounds memory)

# ---- lookup tables built once from REBER_TRANSITIONS -------------------------------------------
_N_STATES = len(REBER_TRANSITIONS)
_END = _N_STATES  # absorbing pseudo-state after the E; emits code 0 (padding)
_DEAD = _N_STATES + 1  # absorbing reject state of the acceptor
_MAX_OUT = max(len(v) for v in REBER_TRANSITIONS.values())
_OUT_DEGREE = np.ones(_N_STATES + 1, dtype=np.int64)
_OUT_CODE = np.zeros((_N_STATES + 1, _MAX_OUT), dtype=np.uint8)
_OUT_NEXT = np.full((_N_STATES + 1, _MAX_OUT), _END, dtype=np.int64)
_ACCEPT_NEXT = np.full((_N_STATES + 2, VOCAB_SIZE), _DEAD, dtype=np.int64)  # (state, code) -> state
_ACCEPT_NEXT[_END, 0] = _END  # padding after the end keeps an accepted string accepted
for _state, _edges in REBER_TRANSITIONS.items():
    _OUT_DEGREE[_state] = len(_edges)
    for _j, (_letter, _next) in enumerate(_edges):
        _OUT_CODE[_state, _j] = ord(_letter)
        _OUT_NEXT[_state, _j] = _END if _next is None else _next
        _ACCEPT_NEXT[_state, ord(_letter)] = _END if _next is None else _next
# code of an interior letter -> the other four interior letters (Reber-letters-only corruption)
_OTHER_INTERIOR = np.zeros((VOCAB_SIZE, len(INTERIOR_LETTERS) - 1), dtype=np.uint8)
for _letter in INTERIOR_LETTERS:
    _OTHER_INTERIOR[ord(_letter)] = [ord(c) for c in INTERIOR_LETTERS if c != _letter]
_NON_REBER_CODES = np.frombuffer(NON_REBER_LETTERS.encode("ascii"), dtype=np.uint8)


def is_reber(text: str) -> bool:
    """Whether the whole of ``text`` is accepted by the Reber automaton (B ... E, ending at state 6)."""
    state: int | None = START_STATE
    for char in text:
        if state is None:  # letters after the final E
            return False
        state = next((dst for letter, dst in REBER_TRANSITIONS[state] if letter == char), -1)
        if state == -1:
            return False
    return state is None


def length_distribution(max_length: int) -> np.ndarray:
    """Exact probabilities ``p[L]``, ``L = 0..max_length``, that a uniform random walk has length L.

    Used to check that a length window keeps enough walks for rejection sampling to finish.
    """
    prob = np.zeros(_N_STATES)
    prob[START_STATE] = 1.0
    out = np.zeros(max_length + 1)
    for length in range(1, max_length + 1):
        new = np.zeros(_N_STATES)
        for state, edges in REBER_TRANSITIONS.items():
            for _letter, dst in edges:
                if dst is None:
                    out[length] += prob[state] / len(edges)
                else:
                    new[dst] += prob[state] / len(edges)
        prob = new
    return out


def _check_lengths(min_length: int, max_length: int) -> float:
    """Validate a length window; returns the probability that a walk falls in it."""
    for name, value in (("min_length", min_length), ("max_length", max_length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"{name} must be an integer, got {value!r}")
    if min_length < MIN_REBER_LENGTH:
        raise InputError(
            f"min_length must be at least {MIN_REBER_LENGTH} (BTXSE is the shortest Reber string), "
            f"got {min_length}"
        )
    if max_length > MAX_LENGTH_LIMIT:
        raise InputError(f"max_length must be at most {MAX_LENGTH_LIMIT}, got {max_length}")
    if min_length > max_length:
        raise InputError(f"min_length ({min_length}) must not exceed max_length ({max_length})")
    window = float(length_distribution(int(max_length))[int(min_length) :].sum())
    if window < MIN_WINDOW_PROBABILITY:
        raise InputError(
            f"only {window:.2g} of random Reber walks have a length in [{min_length}, {max_length}] "
            f"(at least {MIN_WINDOW_PROBABILITY:g} is needed for rejection sampling); long walks are "
            "exponentially rare, lower min_length"
        )
    return window


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 < value < 1.0:
        raise InputError(f"{name} must be a number strictly between 0 and 1, got {value!r}")


def _walks(
    rng: np.random.Generator, n: int, min_length: int, max_length: int, window: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform random walks with length in the window: uint8 codes ``(n, max_length)``, lengths.

    Walks are simulated in vectorized batches for ``max_length`` steps; those that have not ended
    or are shorter than ``min_length`` are dropped (rejection sampling), until ``n`` are kept.
    """
    codes_parts: list[np.ndarray] = []
    length_parts: list[np.ndarray] = []
    remaining = n
    cap = max(1, _CELL_BUDGET // max_length)
    while remaining > 0:
        batch = min(cap, int(math.ceil(remaining / window * 1.1)) + 8)
        uniform = rng.random((batch, max_length))
        codes = np.zeros((batch, max_length), dtype=np.uint8)
        state = np.full(batch, START_STATE, dtype=np.int64)
        for t in range(max_length):
            choice = (uniform[:, t] * _OUT_DEGREE[state]).astype(np.int64)
            codes[:, t] = _OUT_CODE[state, choice]
            state = _OUT_NEXT[state, choice]
        lengths = np.count_nonzero(codes, axis=1)
        keep = np.flatnonzero((state == _END) & (lengths >= min_length))[:remaining]
        codes_parts.append(codes[keep])
        length_parts.append(lengths[keep])
        remaining -= keep.size
    return np.concatenate(codes_parts), np.concatenate(length_parts).astype(np.int64)


def _accepts(codes: np.ndarray) -> np.ndarray:
    """Vectorized :func:`is_reber` over zero-padded ASCII code rows (boolean per row)."""
    state = np.full(codes.shape[0], START_STATE, dtype=np.int64)
    for t in range(codes.shape[1]):
        state = _ACCEPT_NEXT[state, codes[:, t]]
    return state == _END


def _corrupt(
    rng: np.random.Generator, codes: np.ndarray, lengths: np.ndarray, reber_only: np.ndarray
) -> np.ndarray:
    """Replace the letters of k >= 1 distinct interior positions per walk (see the module doc)."""
    n, width = codes.shape
    interior = lengths - 2
    k = np.minimum(rng.geometric(0.5, size=n), interior)
    positions = np.arange(width)
    is_interior = (positions >= 1) & (positions[None, :] < (lengths - 1)[:, None])
    keys = np.where(is_interior, rng.random((n, width)), 2.0)
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    chosen = ranks < k[:, None]
    reber_codes = _OTHER_INTERIOR[codes, rng.integers(0, _OTHER_INTERIOR.shape[1], size=(n, width))]
    other_codes = _NON_REBER_CODES[rng.integers(0, _NON_REBER_CODES.size, size=(n, width))]
    replacement = np.where(reber_only[:, None], reber_codes, other_codes)
    return np.where(chosen, replacement, codes)


def _negatives(
    rng: np.random.Generator,
    n: int,
    min_length: int,
    max_length: int,
    window: float,
    reber_letters_fraction: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` negative strings: codes, lengths and whether each uses Reber letters only."""
    reber_only = rng.random(n) < reber_letters_fraction
    codes, lengths = _walks(rng, n, min_length, max_length, window)
    codes = _corrupt(rng, codes, lengths, reber_only)
    redo = np.flatnonzero(_accepts(codes))
    while redo.size:  # a corruption that happens to be a Reber string: redraw, same kind
        new_codes, new_lengths = _walks(rng, redo.size, min_length, max_length, window)
        codes[redo] = _corrupt(rng, new_codes, new_lengths, reber_only[redo])
        lengths[redo] = new_lengths
        redo = redo[_accepts(codes[redo])]
    return codes, lengths, reber_only


def _decode(codes: np.ndarray, lengths: np.ndarray) -> list[str]:
    """The strings of 0-padded ASCII code rows."""
    codes = np.asarray(codes, dtype=np.uint8)
    return [row[:length].tobytes().decode("ascii") for row, length in zip(codes, lengths.tolist())]


def reber_string(rng: np.random.Generator, min_length: int = 11, max_length: int = 53) -> str:
    """A positive string: a uniform random walk of the automaton, resampled until its length fits."""
    window = _check_lengths(min_length, max_length)
    codes, lengths = _walks(rng, 1, min_length, max_length, window)
    return _decode(codes, lengths)[0]


def negative_string(
    rng: np.random.Generator,
    min_length: int = 11,
    max_length: int = 53,
    reber_letters_fraction: float = 0.45,
) -> str:
    """A negative string: a walk with corrupted interior letters, never accepted (see the module doc)."""
    window = _check_lengths(min_length, max_length)
    _check_fraction("reber_letters_fraction", reber_letters_fraction)
    codes, lengths, _ = _negatives(rng, 1, min_length, max_length, window, reber_letters_fraction)
    return _decode(codes, lengths)[0]


def encode(strings: Sequence[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ASCII codes ``(n, width)`` int64, right-padded with 0, and lengths ``(n,)`` int64.

    ``width`` is ``max_length`` if given (a longer string is an error), else the longest string.
    Code 0 is reserved for padding, so NUL characters are rejected like non-ASCII ones.
    """
    if isinstance(strings, str):
        raise InputError("encode expects a sequence of strings, not a single string")
    strings = list(strings)
    if not strings:
        raise InputError("no strings to encode")
    raw: list[bytes] = []
    for i, text in enumerate(strings):
        if not isinstance(text, str):
            raise InputError(f"string {i} is a {type(text).__name__}, not a str")
        if not text:
            raise InputError(f"string {i} is empty")
        if not text.isascii() or "\x00" in text:
            raise InputError(f"string {i} ({text[:20]!r}) has a non-ASCII or NUL character")
        raw.append(text.encode("ascii"))
    lengths = np.fromiter((len(b) for b in raw), dtype=np.int64, count=len(raw))
    width = int(lengths.max())
    if max_length is not None:
        if max_length < width:
            raise InputError(f"a string has {width} characters, more than max_length={max_length}")
        width = int(max_length)
    flat = np.frombuffer(b"".join(raw), dtype=np.uint8)
    codes = np.zeros((len(raw), width), dtype=np.int64)
    codes[np.arange(width)[None, :] < lengths[:, None]] = flat  # row-major fill = string order
    return torch.from_numpy(codes), torch.from_numpy(lengths)


@dataclass(frozen=True, eq=False)
class ReberData:
    """A Reber train/test split: padded ASCII codes, lengths, labels (1 = in the grammar), strings."""

    train_codes: torch.Tensor  # int64 (n_train, max_length), 0-padded
    train_lengths: torch.Tensor  # int64 (n_train,)
    train_labels: torch.Tensor  # int64 (n_train,)
    test_codes: torch.Tensor
    test_lengths: torch.Tensor
    test_labels: torch.Tensor
    strings_train: tuple[str, ...]
    strings_test: tuple[str, ...]
    n_strings: int
    positive_fraction: float
    test_fraction: float
    min_length: int
    max_length: int
    reber_letters_fraction: float
    seed: int

    @property
    def vocab_size(self) -> int:
        """Embedding size: one entry per ASCII code."""
        return VOCAB_SIZE

    @property
    def n_train(self) -> int:
        return int(self.train_codes.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_codes.shape[0])

    @property
    def width(self) -> int:
        """Padded sequence length (the ``max_length`` of the config)."""
        return int(self.train_codes.shape[1])

    def describe(self) -> dict:
        """JSON-ready summary: sizes, class balance and the generation config."""
        return {
            "task": "reber",
            "n_train": self.n_train,
            "n_test": self.n_test,
            "train_positives": int(self.train_labels.sum()),
            "test_positives": int(self.test_labels.sum()),
            "n_strings": self.n_strings,
            "positive_fraction": self.positive_fraction,
            "test_fraction": self.test_fraction,
            "min_length": self.min_length,
            "max_length": self.max_length,
            "reber_letters_fraction": self.reber_letters_fraction,
            "vocab_size": self.vocab_size,
            "seed": self.seed,
        }


def make_reber(
    n_strings: int = 25_000,
    positive_fraction: float = 0.5,
    test_fraction: float = 0.25,
    min_length: int = 11,
    max_length: int = 53,
    reber_letters_fraction: float = 0.45,
    seed: int = 0,
) -> ReberData:
    """The Reber classification data set, deterministic in ``seed``.

    Exactly ``round(n_strings * positive_fraction)`` positives, the rest negatives, shuffled;
    then a seeded *stratified* split with exactly ``round(n_strings * test_fraction)`` test
    strings, of which ``round(n_test * n_pos / n_strings)`` are positive (so both sides keep the
    class balance). Duplicate strings are not removed (short strings recur, as in a random sample).
    """
    if isinstance(n_strings, bool) or not isinstance(n_strings, (int, np.integer)) or n_strings < 4:
        raise InputError(f"n_strings must be an integer of at least 4, got {n_strings!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    _check_fraction("positive_fraction", positive_fraction)
    _check_fraction("test_fraction", test_fraction)
    _check_fraction("reber_letters_fraction", reber_letters_fraction)
    window = _check_lengths(min_length, max_length)
    n = int(n_strings)
    n_pos = round(n * positive_fraction)
    n_test = round(n * test_fraction)
    if not 0 < n_pos < n:
        raise InputError(f"positive_fraction {positive_fraction} leaves one class empty for {n} strings")
    if not 0 < n_test < n:
        raise InputError(f"test_fraction {test_fraction} leaves the train or test set empty for {n} strings")

    rng = np.random.default_rng(seed)
    pos_codes, pos_lengths = _walks(rng, n_pos, min_length, max_length, window)
    neg_codes, neg_lengths, _ = _negatives(
        rng, n - n_pos, min_length, max_length, window, reber_letters_fraction
    )
    codes = np.concatenate([pos_codes, neg_codes]).astype(np.int64)
    lengths = np.concatenate([pos_lengths, neg_lengths])
    labels = np.concatenate([np.ones(n_pos, np.int64), np.zeros(n - n_pos, np.int64)])
    order = rng.permutation(n)
    codes, lengths, labels = codes[order], lengths[order], labels[order]

    n_test_pos = min(n_pos, max(n_test - (n - n_pos), round(n_test * n_pos / n)))
    pos_idx, neg_idx = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    test_idx = np.sort(np.concatenate([
        rng.choice(pos_idx, size=n_test_pos, replace=False),
        rng.choice(neg_idx, size=n_test - n_test_pos, replace=False),
    ]))
    is_test = np.zeros(n, dtype=bool)
    is_test[test_idx] = True
    train_idx = np.flatnonzero(~is_test)
    strings = _decode(codes, lengths)

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array))

    return ReberData(
        train_codes=tensor(codes[train_idx]),
        train_lengths=tensor(lengths[train_idx]),
        train_labels=tensor(labels[train_idx]),
        test_codes=tensor(codes[test_idx]),
        test_lengths=tensor(lengths[test_idx]),
        test_labels=tensor(labels[test_idx]),
        strings_train=tuple(strings[i] for i in train_idx),
        strings_test=tuple(strings[i] for i in test_idx),
        n_strings=n,
        positive_fraction=float(positive_fraction),
        test_fraction=float(test_fraction),
        min_length=int(min_length),
        max_length=int(max_length),
        reber_letters_fraction=float(reber_letters_fraction),
        seed=int(seed),
    )
