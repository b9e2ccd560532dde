"""The activations DagNet nodes use: tanh is computed through sigmoid (faster on CPU)."""

from __future__ import annotations

import pytest
import torch

from netbonsai.errors import InputError
from netbonsai.nets.activations import ACTIVATIONS, apply_activation, check_activation, fast_tanh


def test_fast_tanh_equals_tanh() -> None:
    x = torch.linspace(-40, 40, 400_001)
    assert float((fast_tanh(x) - torch.tanh(x)).abs().max()) <= 2.5e-7  # float32
    x64 = x.double()
    assert float((fast_tanh(x64) - torch.tanh(x64)).abs().max()) <= 1e-15
    special = fast_tanh(torch.tensor([float("inf"), -float("inf"), 0.0, float("nan")]))
    assert special[:3].tolist() == [1.0, -1.0, 0.0] and torch.isnan(special[3])
    assert ACTIVATIONS["tanh"] is fast_tanh and apply_activation("tanh", x) is not x


def test_fast_tanh_derivatives_every_way() -> None:
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fast_tanh, (x,), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(fast_tanh, (x,))
    v = torch.randn(5, dtype=torch.float64)
    torch.testing.assert_close(torch.func.hessian(lambda t: fast_tanh(t).sum())(v),
                               torch.func.hessian(lambda t: torch.tanh(t).sum())(v))
    torch.testing.assert_close(torch.func.vmap(fast_tanh)(x.detach()), torch.tanh(x.detach()))
    y = fast_tanh(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, 1 - torch.tanh(x.detach()) ** 2)


def test_unknown_activation_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown activation 'swish'"):
        check_activation("swish")
