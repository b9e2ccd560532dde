"""Reber grammar data set (paper 001): automaton, positive and negative strings, encoding, split."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from netbonsai.data import (
    REBER_LETTERS, REBER_TRANSITIONS, ReberData, encode, is_reber, length_distribution, make_reber,
    negative_string, reber_string)
from netbonsai.data.reber import _accepts
from netbonsai.errors import InputError


@pytest.fixture(scope="module")
def data() -> ReberData:
    return make_reber()  # the paper's defaults, seed 0


def all_strings(d: ReberData) -> tuple[list[str], np.ndarray, np.ndarray]:
    strings = list(d.strings_train + d.strings_test)
    labels = np.concatenate([d.train_labels.numpy(), d.test_labels.numpy()])
    lengths = np.concatenate([d.train_lengths.numpy(), d.test_lengths.numpy()])
    return strings, labels, lengths


# ---------------------------------------------------------------------- automaton
@pytest.mark.parametrize("text", ["BPTVPXTTVVE", "BTXSE", "BPVVE", "BTSXXTVVE", "BTSSXXVPSE", "BPTTVPXVPSE"])
def test_known_positives_are_accepted(text: str) -> None:
    assert is_reber(text)


@pytest.mark.parametrize("text", [
    "BTTVPXTVPSE",  # the paper's negative example
    "",  # empty
    "BTXS",  # missing E
    "PTXSE",  # wrong start
    "TXSE",  # no B
    "BTXSEE",  # letters after the end
    "BTXSEB",
    "btxse",  # lower case
    "BTXQSE",  # non-Reber letter
    "BPVV",
    "B",
    "E",
])
def test_known_negatives_are_rejected(text: str) -> None:
    assert not is_reber(text)


def test_automaton_table() -> None:
    assert REBER_LETTERS == "BTPSXVE"
    assert REBER_TRANSITIONS[0] == (("B", 1),)
    assert REBER_TRANSITIONS[6] == (("E", None),)
    letters = {letter for edges in REBER_TRANSITIONS.values() for letter, _ in edges}
    assert letters == set(REBER_LETTERS)


def test_vectorized_acceptor_agrees_with_is_reber() -> None:
    rng = np.random.default_rng(3)
    texts = ["BPTVPXTTVVE", "BTXSE", "BTTVPXTVPSE", "BTXS", "BTXSEE", "PTXSE"]
    texts += ["".join(rng.choice(list("BTPSXVEQ"), size=rng.integers(1, 12))) for _ in range(300)]
    texts += [reber_string(rng, 5, 20) for _ in range(50)]
    codes, _ = encode(texts)
    expected = np.array([is_reber(t) for t in texts])
    assert expected.sum() >= 50
    np.testing.assert_array_equal(_accepts(codes.numpy()), expected)


def test_length_distribution_matches_enumeration() -> None:
    # Enumerate every walk up to 9 letters, each with its probability, from the table.
    exact = np.zeros(10)
    frontier = [(0, "", 1.0)]
    while frontier:
        state, text, prob = frontier.pop()
        edges = REBER_TRANSITIONS[state]
        for letter, dst in edges:
            if len(text) + 1 > 9:
                continue
            if dst is None:
                exact[len(text) + 1] += prob / len(edges)
            else:
                frontier.append((dst, text + letter, prob / len(edges)))
    dist = length_distribution(9)
    np.testing.assert_allclose(dist, exact, atol=1e-12)
    assert dist[5] == pytest.approx(0.25)  # BTXSE and BPVVE, 1/8 each
    assert length_distribution(200).sum() == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------------- single strings
def test_single_strings_respect_grammar_and_bounds() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        pos = reber_string(rng, min_length=6, max_length=9)
        neg = negative_string(rng, min_length=6, max_length=9)
        assert is_reber(pos) and 6 <= len(pos) <= 9
        assert not is_reber(neg) and 6 <= len(neg) <= 9
    assert {reber_string(rng, 5, 5) for _ in range(50)} == {"BTXSE", "BPVVE"}


def test_negative_string_kinds() -> None:
    rng = np.random.default_rng(2)
    only = [negative_string(rng, 5, 20, reber_letters_fraction=0.999) for _ in range(100)]
    other = [negative_string(rng, 5, 20, reber_letters_fraction=0.001) for _ in range(100)]
    assert sum(set(s) <= set(REBER_LETTERS) for s in only) >= 95
    assert sum(set(s) <= set(REBER_LETTERS) for s in other) <= 5
    assert all(not is_reber(s) for s in only + other)


# ---------------------------------------------------------------------- the data set
def test_labels_match_the_grammar_and_lengths_are_in_bounds(data: ReberData) -> None:
    strings, labels, lengths = all_strings(data)
    assert len(strings) == 25_000
    accepted = np.array([is_reber(s) for s in strings])
    np.testing.assert_array_equal(accepted, labels == 1)
    np.testing.assert_array_equal(lengths, [len(s) for s in strings])
    assert lengths.min() >= 11 and lengths.max() <= 53
    # negatives keep the walk's frame: the label is not visible in the first or last letter
    assert all(s[0] == "B" and s[-1] == "E" for s in strings)
    assert all(set(s) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for s in strings)


def test_exact_class_counts_and_stratified_split(data: ReberData) -> None:
    assert (data.n_train, data.n_test) == (18_750, 6_250)
    assert int(data.train_labels.sum()) == 9_375 and int(data.test_labels.sum()) == 3_125
    assert len(data.strings_train) == data.n_train and len(data.strings_test) == data.n_test
    assert data.train_lengths.shape == (data.n_train,) and data.test_labels.shape == (data.n_test,)
    for t in (data.train_codes, data.train_lengths, data.train_labels, data.test_codes):
        assert t.dtype == torch.int64
    assert data.vocab_size == 128 and data.width == 53
    assert data.describe()["n_test"] == 6_250


def test_odd_sizes_are_exact() -> None:
    d = make_reber(n_strings=101, positive_fraction=0.3, test_fraction=0.2, seed=5)
    labels = torch.cat([d.train_labels, d.test_labels])
    assert int(labels.sum()) == round(101 * 0.3)
    assert d.n_test == round(101 * 0.2) and d.n_train == 101 - d.n_test
    assert int(d.test_labels.sum()) == round(d.n_test * 30 / 101)
    small = make_reber(n_strings=4, min_length=5, max_length=12)
    assert small.n_train + small.n_test == 4 and small.n_test == 1


def test_split_is_shuffled(data: ReberData) -> None:
    labels = data.train_labels.numpy()
    assert 0.3 < labels[:1000].mean() < 0.7  # not all positives first


def test_reber_letters_fraction_of_negatives(data: ReberData) -> None:
    strings, labels, _ = all_strings(data)
    negatives = [s for s, y in zip(strings, labels) if y == 0]
    frac = np.mean([set(s) <= set(REBER_LETTERS) for s in negatives])
    assert abs(frac - 0.45) < 0.03
    d = make_reber(n_strings=4000, reber_letters_fraction=0.2, seed=1)
    strings, labels, _ = all_strings(d)
    frac = np.mean([set(s) <= set(REBER_LETTERS) for s, y in zip(strings, labels) if y == 0])
    assert abs(frac - 0.2) < 0.04


def test_positive_lengths_follow_the_walk_distribution(data: ReberData) -> None:
    _, labels, lengths = all_strings(data)
    pos = lengths[labels == 1]
    assert pos.min() == 11 and pos.max() >= 30
    # P(max >= 40) over 12,500 draws is only ~0.78, so compare with the exact law instead.
    law = length_distribution(53)[11:]
    law /= law.sum()
    hist = np.bincount(pos - 11, minlength=law.size) / pos.size
    np.testing.assert_allclose(hist[:8], law[:8], atol=0.015)
    assert pos.mean() == pytest.approx(float((np.arange(11, 54) * law).sum()), abs=0.15)
    neg = lengths[labels == 0]
    assert abs(neg.mean() - pos.mean()) < 0.3  # negatives are walks of the same law


def test_codes_decode_and_padding_is_zero(data: ReberData) -> None:
    for codes, lengths, strings in ((data.train_codes, data.train_lengths, data.strings_train),
                                    (data.test_codes, data.test_lengths, data.strings_test)):
        c, n = codes.numpy(), lengths.numpy()
        assert c.shape == (len(strings), 53)
        beyond = np.arange(c.shape[1])[None, :] >= n[:, None]
        assert (c[beyond] == 0).all() and (c[~beyond] > 0).all() and c.max() < 128
        for i in range(0, len(strings), 97):
            assert "".join(map(chr, c[i, : n[i]])) == strings[i]


def test_same_seed_same_data_different_seed_different() -> None:
    a = make_reber(n_strings=2000, seed=7)
    b = make_reber(n_strings=2000, seed=7)
    c = make_reber(n_strings=2000, seed=8)
    assert a.strings_train == b.strings_train and a.strings_test == b.strings_test
    for name in ("train_codes", "train_lengths", "train_labels", "test_codes", "test_lengths", "test_labels"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert a.strings_train != c.strings_train
    assert not torch.equal(a.train_codes, c.train_codes)


# ---------------------------------------------------------------------- encode
def test_encode_round_trip_and_width() -> None:
    codes, lengths = encode(["BTXSE", "BPTVPXTTVVE"])
    assert codes.dtype == torch.int64 and lengths.tolist() == [5, 11]
    assert codes.shape == (2, 11)
    assert codes[0, :5].tolist() == [ord(c) for c in "BTXSE"] and codes[0, 5:].sum() == 0
    wide, _ = encode(("BTXSE",), max_length=53)
    assert wide.shape == (1, 53)


@pytest.mark.parametrize("strings, max_length", [
    (["BTXSE", ""], None),
    (["BTXSé"], None),
    (["BT\x00SE"], None),
    (["BTSSXSE"], 5),
    ("BTXSE", None),
    ([], None),
    ([b"BTXSE"], None),
])
def test_encode_rejects_bad_input(strings, max_length) -> None:
    with pytest.raises(InputError):
        encode(strings, max_length=max_length)


# ---------------------------------------------------------------------- argument validation
@pytest.mark.parametrize("kwargs", [
    {"n_strings": 3},
    {"n_strings": 0},
    {"n_strings": 10.5},
    {"positive_fraction": 0.0},
    {"positive_fraction": 1.0},
    {"positive_fraction": -0.1},
    {"test_fraction": 1.5},
    {"test_fraction": 0},
    {"reber_letters_fraction": 1.0},
    {"reber_letters_fraction": float("nan")},
    {"min_length": 20, "max_length": 12},
    {"min_length": 4},
    {"max_length": 5000},
    {"min_length": 11.0},
    {"min_length": 200, "max_length": 300},  # too few walks that long for rejection sampling
    {"n_strings": 4, "positive_fraction": 0.1},  # no positives
    {"n_strings": 4, "test_fraction": 0.1},  # empty test set
    {"seed": -1},
])
def test_bad_arguments_raise_input_error(kwargs) -> None:
    with pytest.raises(InputError):
        make_reber(**kwargs)


def test_single_string_functions_validate() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(InputError):
        reber_string(rng, min_length=3)
    with pytest.raises(InputError):
        negative_string(rng, min_length=12, max_length=11)
    with pytest.raises(InputError):
        negative_string(rng, reber_letters_fraction=2.0)


def test_combinations_of_letters_are_only_reber_when_generated() -> None:
    # every Reber string of length 5..7 over the Reber letters is one a walk can produce
    rng = np.random.default_rng(4)
    reachable = {reber_string(rng, 5, 7) for _ in range(2000)}
    candidates = ("B" + "".join(p) + "E" for n in (3, 4, 5) for p in itertools.product("TPSXV", repeat=n))
    brute = {s for s in candidates if is_reber(s)}
    assert reachable == brute
