"""Saving and loading pruned and grown residual CNNs: the same function back, and one clear
error for a missing, foreign or corrupt file."""

from __future__ import annotations

import pytest
import torch

from netbonsai.errors import InputError
from netbonsai.residual import (
    ResidualCNN, cnn_spec, count_params, find_blocks, insert_block, load_residual_cnn, remove_blocks,
    save_residual_cnn,
)


def edited() -> ResidualCNN:
    torch.manual_seed(0)
    net = ResidualCNN(1, (4, 8), 3, 5, image_size=(10, 10))
    net = remove_blocks(net, find_blocks(net)[1])
    return insert_block(net, 1, init="random", generator=torch.Generator().manual_seed(1)).eval()


def test_a_pruned_and_grown_cnn_loads_back_with_the_same_outputs(tmp_path) -> None:
    net = edited()
    assert cnn_spec(net) == {"in_channels": 1, "widths": [4, 8], "blocks": [2, 4], "n_out": 5, "image_size": [10, 10]}
    path = save_residual_cnn(net, tmp_path / "net.pt", {"note": "x"})
    loaded, info = load_residual_cnn(path)
    x = torch.rand(6, 100)
    assert info == {"note": "x"} and not loaded.training
    assert count_params(loaded) == count_params(net)
    assert torch.equal(loaded(x), net(x))
    assert torch.equal(loaded(x.reshape(6, 1, 10, 10)), net(x))  # images and flat rows alike


def test_flat_rows_need_the_image_size() -> None:
    torch.manual_seed(0)
    net = ResidualCNN(1, (4,), 2, 3, image_size=(8, 8)).eval()
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(net(x.flatten(1)), net(x))
    with pytest.raises(InputError, match="image_size"):
        ResidualCNN(1, (4,), 2, 3, image_size=(8,))
    with pytest.raises(InputError, match="image side"):
        ResidualCNN(1, (4,), 2, 3, image_size=(8, 0))


def test_bad_files_are_one_clear_error(tmp_path) -> None:
    with pytest.raises(InputError, match="no residual network file"):
        load_residual_cnn(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="not a readable"):
        load_residual_cnn(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="not a netbonsai residual CNN"):
        load_residual_cnn(tmp_path / "foreign.pt")
    path = save_residual_cnn(edited(), tmp_path / "net.pt")
    data = torch.load(path, weights_only=True)
    data["spec"]["widths"] = [4, 6]
    torch.save(data, tmp_path / "mismatch.pt")
    with pytest.raises(InputError, match="do not fit"):
        load_residual_cnn(tmp_path / "mismatch.pt")
    with pytest.raises(InputError, match="ResidualCNN"):
        cnn_spec(torch.nn.Linear(2, 2))
