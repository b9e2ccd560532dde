"""MaskedRecurrent: a population of sparse layered RNN/LSTM/GRU classifiers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from netbonsai.errors import InputError
from netbonsai.nets.masked import count_weights, mask_applier, num_live_params
from netbonsai.nets.recurrent import MaskedRecurrent, member_seed
from netbonsai.nets.structure import LayeredStructure

CELLS = ["tanh", "relu", "lstm", "gru"]
GATES = {"tanh": 1, "relu": 1, "lstm": 4, "gru": 3}


def torch_layer(cell: str, inputs: int, hidden: int, layers: int = 1) -> nn.Module:
    if cell in ("tanh", "relu"):
        return nn.RNN(inputs, hidden, num_layers=layers, nonlinearity=cell, batch_first=True)
    return (nn.LSTM if cell == "lstm" else nn.GRU)(inputs, hidden, num_layers=layers, batch_first=True)


def batch(n: int = 6, t: int = 7, features: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, features, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    lengths[0] = t
    return x, lengths


def random_structure(input_size: int, widths: list[int], seed: int) -> LayeredStructure:
    """Random skip masks (every unit keeps at least one input) and a random non-empty output set."""
    rng = np.random.default_rng(seed)
    masks = []
    for layer, width in enumerate(widths):
        mask = rng.random((width, input_size + sum(widths[:layer]))) < 0.5
        mask[np.arange(width), rng.integers(0, mask.shape[1], width)] = True
        masks.append(mask)
    out = rng.random(sum(widths)) < 0.5
    out[-1] = True
    return LayeredStructure(input_size, tuple(widths), tuple(masks), out)


def copy_layer(model: MaskedRecurrent, ref: nn.Module, layer: int, ref_layer: int, cols: slice) -> None:
    """Copy layer ``layer`` of member 0 into torch's layer ``ref_layer``, reading i2h columns ``cols``."""
    with torch.no_grad():
        getattr(ref, f"weight_ih_l{ref_layer}").copy_(getattr(model, f"weight_ih_l{layer}")[0][:, cols])
        getattr(ref, f"weight_hh_l{ref_layer}").copy_(getattr(model, f"weight_hh_l{layer}")[0])
        getattr(ref, f"bias_ih_l{ref_layer}").copy_(getattr(model, f"bias_ih_l{layer}")[0])
        getattr(ref, f"bias_hh_l{ref_layer}").copy_(getattr(model, f"bias_hh_l{layer}")[0])


def torch_final(module: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, state = module(packed)
    h = state[0] if isinstance(state, tuple) else state
    return out, h[-1]


# ---------------------------------------------------------------------- exactness against torch
@pytest.mark.parametrize("cell", CELLS)
def test_stacked_structure_equals_torch_two_layer_rnn(cell: str) -> None:
    e, width, classes = 5, 4, 3
    model = MaskedRecurrent([LayeredStructure.stacked(e, [width, width])], cell, classes, seed=3).double()
    ref = torch_layer(cell, e, width, layers=2).double()
    copy_layer(model, ref, 0, 0, slice(0, e))
    copy_layer(model, ref, 1, 1, slice(e, e + width))
    x, lengths = batch()
    _, h = torch_final(ref, x, lengths)
    expected = h @ model.weight_out[0][:, width:].T + model.bias_out[0]
    got = model(x, lengths)
    assert got.shape == (1, x.shape[0], classes)
    torch.testing.assert_close(got[0], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_different_widths_with_embedding_equal_chained_torch_layers(cell: str) -> None:
    vocab, e, a, b, classes = 11, 5, 4, 3, 2
    model = MaskedRecurrent([LayeredStructure.stacked(e, [a, b])], cell, classes, vocab_size=vocab, seed=7).double()
    first, second = torch_layer(cell, e, a).double(), torch_layer(cell, a, b).double()
    copy_layer(model, first, 0, 0, slice(0, e))
    copy_layer(model, second, 1, 0, slice(e, e + a))
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, vocab, (6, 9), generator=g)
    lengths = torch.tensor([9, 3, 1, 5, 9, 7])
    emb = model.embedding[0][codes]
    # each sample unpadded, one at a time
    rows = []
    for i, n in enumerate(lengths.tolist()):
        out, _ = first(emb[i : i + 1, :n])
        _, state = second(out)
        h = (state[0] if isinstance(state, tuple) else state)[-1]
        rows.append(h @ model.weight_out[0][:, a:].T + model.bias_out[0])
    torch.testing.assert_close(model(codes, lengths)[0], torch.cat(rows), atol=1e-6, rtol=0)


def reference_forward(model: MaskedRecurrent, k: int, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A plain per-sample, per-step loop of the paper's equations for member ``k`` (torch's gates)."""
    g = model.gates
    rows = []
    for i, n in enumerate(lengths.tolist()):
        h = [torch.zeros(w, dtype=x.dtype) for w in model.widths]
        c = [torch.zeros(w, dtype=x.dtype) for w in model.widths]
        for t in range(n):
            for l, w in enumerate(model.widths):
                src = torch.cat([x[i, t], *h[:l]])  # layers below already hold step t
                wi = getattr(model, f"weight_ih_l{l}")[k] * getattr(model, f"mask_ih_l{l}")[k]
                wh = getattr(model, f"weight_hh_l{l}")[k] * getattr(model, f"mask_hh_l{l}")[k]
                gi = wi @ src + getattr(model, f"bias_ih_l{l}")[k]
                gh = wh @ h[l] + getattr(model, f"bias_hh_l{l}")[k]
                if model.cell == "tanh":
                    h[l] = torch.tanh(gi + gh)
                elif model.cell == "relu":
                    h[l] = torch.relu(gi + gh)
                elif model.cell == "lstm":
                    i_, f_, g_, o_ = (gi + gh).split(w)
                    c[l] = torch.sigmoid(f_) * c[l] + torch.sigmoid(i_) * torch.tanh(g_)
                    h[l] = torch.sigmoid(o_) * torch.tanh(c[l])
                else:
                    r = torch.sigmoid(gi[:w] + gh[:w])
                    z = torch.sigmoid(gi[w : 2 * w] + gh[w : 2 * w])
                    nn_ = torch.tanh(gi[2 * w :] + r * gh[2 * w :])
                    h[l] = (1 - z) * nn_ + z * h[l]
        state = torch.cat(h)
        rows.append((model.weight_out[k] * model.mask_out[k]) @ state + model.bias_out[k])
    assert g == GATES[model.cell]
    return torch.stack(rows)


def skip_structure() -> LayeredStructure:
    """3 layers (3, 2, 2) over 4 inputs: layer 2 reads input 1 directly (a skip) and unit 0 of
    layer 0 (a skip) besides layer 1; the output reads layer 0 unit 2 and layer 2."""
    m0 = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]], dtype=bool)
    m1 = np.zeros((2, 7), dtype=bool)
    m1[0, [4, 5]] = True
    m1[1, [6, 3]] = True
    m2 = np.zeros((2, 9), dtype=bool)
    m2[0, [1, 4, 7]] = True
    m2[1, [8]] = True
    out = np.array([0, 0, 1, 0, 0, 1, 1], dtype=bool)
    return LayeredStructure(4, (3, 2, 2), (m0, m1, m2), out)


@pytest.mark.parametrize("cell", CELLS)
def test_skip_connections_and_masks_match_a_per_step_loop(cell: str) -> None:
    model = MaskedRecurrent([skip_structure()], cell, 3, seed=2).double()
    x, lengths = batch(n=5, t=6, features=4, seed=4)
    torch.testing.assert_close(model(x, lengths)[0], reference_forward(model, 0, x, lengths), atol=1e-6, rtol=0)
    # the masks really are the structure's: 3 * 2 * G... per gate, and removed entries are zero
    g = GATES[cell]
    assert int(model.mask_ih_l2.sum()) == g * 4 and float(model.weight_ih_l2.detach()[~model.mask_ih_l2].abs().sum()) == 0
    assert int(model.mask_out.sum()) == 3 * 3


def population_structures() -> list[LayeredStructure]:
    return [
        random_structure(4, [3, 5], seed=0),
        skip_structure(),
        random_structure(4, [2, 4, 1, 3], seed=1),
    ]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("vocab", [None, 9])
def test_a_padded_member_gives_exactly_what_it_gives_alone(cell: str, vocab: int | None) -> None:
    structures = population_structures()
    population = MaskedRecurrent(structures, cell, 3, vocab_size=vocab, seed=11).double()
    assert population.widths == (3, 5, 2, 3) and population.population_size == 3
    if vocab is None:
        x, lengths = batch(n=5, t=6, features=4, seed=5)
    else:
        x = torch.randint(0, vocab, (5, 6), generator=torch.Generator().manual_seed(5))
        lengths = torch.tensor([6, 2, 4, 1, 6])
    together = population(x, lengths)
    assert together.shape == (3, 5, 3)
    for k, structure in enumerate(structures):
        alone = MaskedRecurrent([structure], cell, 3, vocab_size=vocab, seed=[member_seed(11, k)]).double()
        # the member's initial weights do not depend on the others or on K
        selected = population.select(k)
        for name, value in alone.state_dict().items():
            torch.testing.assert_close(selected.state_dict()[name], value, atol=0, rtol=0)
        torch.testing.assert_close(together[k], alone(x, lengths)[0], atol=1e-12, rtol=0)
        if vocab is None:
            torch.testing.assert_close(together[k], reference_forward(population, k, x, lengths), atol=1e-6, rtol=0)


def test_padded_time_steps_do_not_change_the_state() -> None:
    model = MaskedRecurrent(population_structures(), "lstm", 2, seed=0).double()
    x, lengths = batch(n=4, t=8, features=4, seed=6)
    padded = torch.cat([x, torch.randn(4, 5, 4, dtype=torch.float64)], 1)  # garbage past the ends
    torch.testing.assert_close(model(padded, lengths), model(x, lengths), atol=1e-12, rtol=0)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(model(x[i : i + 1, :n])[:, 0], model(x, lengths)[:, i], atol=1e-12, rtol=0)


def test_initialisation_follows_torch_bounds_and_seeds() -> None:
    a = MaskedRecurrent([LayeredStructure.stacked(6, [50, 8])], "gru", 2, seed=0)
    b = MaskedRecurrent([LayeredStructure.stacked(6, [50, 8])], "gru", 2, seed=0)
    c = MaskedRecurrent([LayeredStructure.stacked(6, [50, 8])], "gru", 2, seed=1)
    assert torch.equal(a.weight_hh_l0, b.weight_hh_l0) and not torch.equal(a.weight_hh_l0, c.weight_hh_l0)
    live = a.weight_hh_l0[a.mask_hh_l0]
    assert live.abs().max() <= 50**-0.5 and live.abs().max() > 0.9 * 50**-0.5
    assert a.weight_ih_l1[a.mask_ih_l1].abs().max() <= 8**-0.5


# ---------------------------------------------------------------------- counts and masks
def test_parameter_counts_per_member() -> None:
    vocab = 10
    structures = [LayeredStructure.stacked(4, [3, 2]), skip_structure()]
    model = MaskedRecurrent(structures, "lstm", 2, vocab_size=vocab, seed=0)
    counts = model.param_counts()
    # member 0: i2h 4*(3*4 + 2*3) = 72, h2h 4*(9 + 4) = 52, out 2*2 = 4, bias 2*4*5 + 2 = 42
    assert counts["i2h"].tolist() == [72, 4 * skip_structure().num_connections]
    assert counts["h2h"].tolist() == [52, 4 * (9 + 4 + 4)]
    assert counts["out"].tolist() == [4, 6]
    assert counts["bias"].tolist() == [42, 2 * 4 * 7 + 2]
    assert counts["embedding"].tolist() == [40, 40]
    assert model.num_params_per_variant().tolist() == [72 + 52 + 4 + 42 + 40, int(counts["total"][1])]
    without_embedding = model.num_params_per_variant(embedding=False).tolist()
    assert without_embedding == [72 + 52 + 4 + 42, int(counts["total"][1]) - 40]
    assert model.select(0).num_params() == 72 + 52 + 4 + 42 + 40
    with pytest.raises(ValueError, match="num_params_per_variant"):
        model.num_params()
    # a dense torch LSTM stack has the same count as the stacked member without the embedding
    dense = torch_layer("lstm", 4, 3), torch_layer("lstm", 3, 2), nn.Linear(2, 2)
    assert sum(p.numel() for m in dense for p in m.parameters()) == 72 + 52 + 4 + 42
    single = model.select(0)
    assert count_weights(single) == (72 + 52, 72 + 52)
    assert num_live_params(single) == 72 + 52 + 4 + 42 + 40
    assert model.dense_weights().tolist() == [124, int(counts["i2h"][1] + counts["h2h"][1])]


def test_removed_weights_stay_zero_and_only_live_weights_get_gradient() -> None:
    model = MaskedRecurrent(population_structures(), "gru", 3, seed=0).double()
    with torch.no_grad():
        model.mask_hh_l1[0, 0, 1] = False  # prune one recurrent weight of member 0
        for name, p in model.named_parameters():
            p.add_(0.5)  # dirty every entry, including removed ones
    assert mask_applier(model) is not None
    x, lengths = batch(n=4, t=5, features=4)
    before = model(x, lengths).detach()
    model.apply_mask_()
    for _, _, weight, mask in model.masked_weights():
        assert float(weight.detach()[~mask].abs().sum()) == 0.0
    torch.testing.assert_close(model(x, lengths).detach(), before, atol=0, rtol=0)  # masked weights never counted
    model(x, lengths).sum().backward()
    for _, _, weight, mask in model.masked_weights():
        assert float(weight.grad[~mask].abs().sum()) == 0.0
        assert float(weight.grad[mask].abs().sum()) > 0.0


def test_select_several_members_and_keeps_dtype() -> None:
    model = MaskedRecurrent(population_structures(), "tanh", 2, seed=4).double()
    x, lengths = batch(n=3, t=4, features=4)
    pair = model.select([2, 0])
    assert pair.population_size == 2 and pair.weight_out.dtype == torch.float64
    torch.testing.assert_close(pair(x, lengths), model(x, lengths)[[2, 0]], atol=1e-12, rtol=0)
    with pytest.raises(InputError, match="out of range"):
        model.select(3)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: MaskedRecurrent([LayeredStructure.stacked(3, [2])], "elman", 2), "unknown recurrent cell"),
        (lambda: MaskedRecurrent([LayeredStructure.stacked(3, [2]), LayeredStructure.stacked(4, [2])], "gru", 2),
         "same input_size"),
        (lambda: MaskedRecurrent([LayeredStructure.stacked(3, [2])], "gru", 2, vocab_size=5, embedding_dim=4),
         "embedding_dim"),
        (lambda: MaskedRecurrent([], "gru", 2), "non-empty"),
        (lambda: MaskedRecurrent([LayeredStructure.stacked(3, [2])], "gru", 2, seed=[1, 2]), "seeds"),
        (lambda: MaskedRecurrent([LayeredStructure.stacked(3, [2])], "gru", 0), "num_classes"),
    ],
)
def test_bad_construction_raises_input_error(make, message: str) -> None:
    with pytest.raises(InputError, match=message):
        make()


def test_bad_forward_input_raises_input_error() -> None:
    model = MaskedRecurrent([LayeredStructure.stacked(3, [2])], "gru", 2, vocab_size=5)
    with pytest.raises(InputError, match="int codes"):
        model(torch.zeros(2, 4, 3))
    with pytest.raises(InputError, match="codes must be in"):
        model(torch.full((2, 4), 5))
    with pytest.raises(InputError, match="length"):
        model(torch.zeros(2, 4, dtype=torch.long), torch.tensor([0, 4]))
    with pytest.raises(InputError, match="lengths must be"):
        model(torch.zeros(2, 4, dtype=torch.long), torch.tensor([4]))
    features = MaskedRecurrent([LayeredStructure.stacked(3, [2])], "gru", 2)
    with pytest.raises(InputError, match="features"):
        features(torch.zeros(2, 4, 5))


# ---------------------------------------------------------------------- gradients
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_equal_torch(cell: str) -> None:
    e, width = 4, 3
    model = MaskedRecurrent([LayeredStructure.stacked(e, [width, width])], cell, 2, seed=3).double()
    ref = torch_layer(cell, e, width, layers=2).double()
    copy_layer(model, ref, 0, 0, slice(0, e))
    copy_layer(model, ref, 1, 1, slice(e, e + width))
    head = model.weight_out.detach()[0][:, width:]
    x, lengths = batch(n=5, t=6, features=e, seed=2)
    _, h = torch_final(ref, x, lengths)
    (h @ head.T).pow(2).sum().backward()
    model(x, lengths).sub(model.bias_out.detach()[:, None]).pow(2).sum().backward()
    for name in ("weight_hh_l0", "weight_hh_l1", "bias_hh_l0", "bias_ih_l1"):
        torch.testing.assert_close(getattr(model, name).grad[0], getattr(ref, name).grad, atol=1e-9, rtol=0)
    torch.testing.assert_close(model.weight_ih_l1.grad[0][:, e:], ref.weight_ih_l1.grad, atol=1e-9, rtol=0)


def test_gradcheck_of_a_padded_population() -> None:
    structures = [skip_structure(), LayeredStructure.stacked(4, [2])]
    for cell in CELLS:
        model = MaskedRecurrent(structures, cell, 2, seed=0).double()
        x, lengths = batch(n=3, t=4, features=4, seed=3)
        names = ["weight_hh_l0", "weight_ih_l2", "bias_hh_l1", "weight_hh_l2"]
        params = [getattr(model, name) for name in names]

        def f(*values):
            return torch.func.functional_call(model, dict(zip(names, values)), (x, lengths))

        assert torch.autograd.gradcheck(f, tuple(p.detach().requires_grad_() for p in params)), cell


@pytest.mark.parametrize("vocab", [5, 60])  # a one-hot product and a gather (ONE_HOT_MAX_VOCAB = 48)
def test_codes_equal_their_embedded_features(vocab: int) -> None:
    structures = population_structures()
    model = MaskedRecurrent(structures, "gru", 2, vocab_size=vocab, seed=8).double()
    codes = torch.randint(0, vocab, (5, 6), generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([6, 3, 5, 1, 6])
    out = model(codes, lengths)
    for k in range(len(structures)):
        features = model.embedding.detach()[k][codes]
        torch.testing.assert_close(out[k], reference_forward(model, k, features, lengths), atol=1e-6, rtol=0)


def test_stack_members_puts_differently_pruned_copies_in_one_population() -> None:
    from netbonsai.nets.recurrent import stack_members

    structures = population_structures()
    base = MaskedRecurrent(structures[:2], "gru", 2, seed=3)
    other = MaskedRecurrent(structures[2:], "gru", 2, seed=4)
    with torch.no_grad():
        base.mask_hh_l0[0, :, 0] = False
        base.apply_mask_()
    stacked = stack_members([base, other])
    assert stacked.population_size == base.population_size + other.population_size
    x, lengths = batch(features=structures[0].input_size)
    expected = torch.cat([base(x, lengths), other(x, lengths)])
    torch.testing.assert_close(stacked(x, lengths), expected, rtol=0, atol=1e-6)
    assert stacked.live_weights().tolist() == base.live_weights().tolist() + other.live_weights().tolist()
    with pytest.raises(InputError, match="share cell"):
        stack_members([base, MaskedRecurrent(structures[:1], "lstm", 2)])
    with pytest.raises(InputError, match="non-empty"):
        stack_members([])


def test_layers_run_only_on_the_members_that_have_them() -> None:
    """A layer runs on the contiguous members that have it (a population ordered by depth skips its
    padded layers), on every member when they are not contiguous; each member still computes
    exactly what it computes alone, outputs and gradients."""
    structures = population_structures()  # depths 2, 3, 4
    x, lengths = batch(n=4, t=5, features=4, seed=9)
    structures.append(LayeredStructure.stacked(4, [2]))  # depth 1
    structures.append(random_structure(4, [3, 2, 2, 2], seed=5))  # depth 4
    orders = {(0, 1, 2): [(0, 3), (0, 3), (1, 3), (2, 3)],
              (2, 1, 0): [(0, 3), (0, 3), (0, 2), (0, 1)],
              (2, 0, 1): [(0, 3), (0, 3), (0, 3), (0, 1)],  # layer 2: members 0 and 2 (1 is padding)
              (3, 2, 0, 4): [(0, 4), (1, 4), (1, 4), (1, 4)]}  # layers 2-3: members 1 and 3
    for order, spans in orders.items():
        seeds = [member_seed(4, k) for k in order]
        model = MaskedRecurrent([structures[k] for k in order], "lstm", 2, seed=seeds).double()
        assert model._layer_members() == spans
        out = model(x, lengths)
        out.sum().backward()
        for j, k in enumerate(order):
            alone = MaskedRecurrent([structures[k]], "lstm", 2, seed=[seeds[j]]).double()
            alone_out = alone(x, lengths)
            torch.testing.assert_close(out[j], alone_out[0], atol=1e-12, rtol=0)
            alone_out.sum().backward()
            for name in ("weight_out", "weight_hh_l0", "weight_ih_l1")[: 2 + (structures[k].num_layers > 1)]:
                mask = getattr(model, name.replace("weight", "mask"))[j]
                alone_mask = getattr(alone, name.replace("weight", "mask"))[0]
                torch.testing.assert_close(getattr(model, name).grad[j][mask],
                                           getattr(alone, name).grad[0][alone_mask], atol=1e-12, rtol=0)


def test_the_cached_reads_follow_the_masks() -> None:
    model = MaskedRecurrent([skip_structure()], "gru", 2, seed=0)
    assert (0, 0, 4) in model._reads()[2]  # layer 2 reads input 1 directly
    assert model._reads() is model._reads()  # cached while the masks stay
    with torch.no_grad():
        model.mask_ih_l2[:, :, :4] = False  # prune the skip connection in place
    assert (0, 0, 4) not in model._reads()[2]
