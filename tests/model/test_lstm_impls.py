"""The LSTM's other implementations against the eager clipped cell: torch's fused kernel with
cuDNN's weight layout, and the Triton cell (run by Triton's interpreter on the CPU)."""

import importlib
import math

import pytest
import torch
from lstm_helpers import clipped_stack

from elmo_train.model import lstm as lstm_module
from elmo_train.model import triton_cell
from elmo_train.model.lstm import LSTMStack, cell_update


def _values_and_gradients(stack: LSTMStack, x: torch.Tensor) -> list[torch.Tensor]:
    layers, state = stack(x)
    loss = sum(
        (layer * torch.linspace(-1, 1, layer.numel()).view_as(layer)).sum() for layer in layers
    )
    loss = loss + state.c.sum()
    return [*layers, state.h, state.c, *torch.autograd.grad(loss, [x, *stack.parameters()])]


def test_fused_path_gives_cudnn_weights_it_can_view(monkeypatch):
    # cuDNN copies each weight into its flat buffer through `weight.view_as((numel, 1))`; a
    # transposed (non-contiguous) projection made `impl=fused` crash on CUDA with "view size is
    # not compatible with input tensor's size and stride". Do the same view on the CPU.
    real_lstm = torch.lstm

    def cudnn_like(x, hx, params, *args):
        for p in params:
            p.view(p.numel(), 1)
        return real_lstm(x, hx, params, *args)

    monkeypatch.setattr(torch, "lstm", cudnn_like)
    stack = clipped_stack(cell_clip=None, proj_clip=None, impl="fused")
    x = torch.randn(2, 3, 5, 8, dtype=torch.double, requires_grad=True)
    fused = _values_and_gradients(stack, x)
    stack.config.impl = "clipped"
    for got, want in zip(fused, _values_and_gradients(stack, x), strict=True):
        torch.testing.assert_close(got, want)


@pytest.fixture
def interpreted(monkeypatch):
    """The Triton kernels built for Triton's CPU interpreter (then rebuilt as they were)."""
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    importlib.reload(triton_cell)
    monkeypatch.setattr(lstm_module, "triton_cell_update", lstm_module._TritonCellUpdate())
    yield
    monkeypatch.undo()
    importlib.reload(triton_cell)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("clip", [0.5, None])
def test_triton_cell_matches_eager_cell_values_and_gradients(interpreted, dtype, clip):
    torch.manual_seed(0)
    gates = (3 * torch.randn(2, 3, 4 * 40, dtype=dtype)).requires_grad_()  # (D, B, 4C)
    gates.data[0, 0, :5] = torch.tensor([0.0, 1e-5, -0.05, 30.0, -30.0])  # tanh's two regimes
    c = torch.randn(2, 3, 40, dtype=dtype).requires_grad_()
    weights = torch.randn(2, 2, 3, 40, dtype=dtype)
    results = []
    for update in (triton_cell.cell_update, cell_update):
        h, c_new = update(gates, c, clip)
        loss = (h * weights[0]).sum() + (c_new * weights[1]).sum()
        results.append([h, c_new, *torch.autograd.grad(loss, [gates, c])])
    if clip is not None:
        assert (results[1][1].abs() == clip).any()  # the clip is active
    tolerance = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {}
    for got, want in zip(*results, strict=True):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, **tolerance)


def test_triton_cell_keeps_nan_as_torch_clamp_does(interpreted):
    gates = torch.zeros(1, 1, 8)
    c = torch.tensor([[[math.nan, 1.0]]])
    h, c_new = triton_cell.cell_update(gates, c, 0.5)
    assert torch.isnan(c_new[..., 0]) and torch.isnan(h[..., 0])
    assert c_new[..., 1] == 0.5


def test_triton_stack_matches_clipped_stack_values_and_gradients(interpreted):
    stack = clipped_stack(cell_clip=0.5, proj_clip=0.5, impl="triton")
    x = torch.randn(2, 3, 5, 8, dtype=torch.double, requires_grad=True)
    triton = _values_and_gradients(stack, x)
    stack.config.impl = "clipped"
    for got, want in zip(triton, _values_and_gradients(stack, x), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_triton_impl_runs_the_eager_cell_with_one_warning_where_it_cannot_run(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    importlib.reload(triton_cell)  # compiled kernels: they need CUDA tensors
    why = triton_cell.unavailable(torch.device("cpu"))
    assert why is not None and ("CUDA" in why or "not installed" in why)
    monkeypatch.setattr(lstm_module, "triton_cell_update", lstm_module._TritonCellUpdate())
    stack = clipped_stack(cell_clip=0.5, proj_clip=0.5, impl="triton")
    x = torch.randn(2, 3, 5, 8, dtype=torch.double)
    with pytest.warns(UserWarning, match="impl=triton") as caught:
        layers, _ = stack(x)
        stack(x)
    assert len(caught) == 1  # once, not once per step
    stack.config.impl = "clipped"
    for got, want in zip(layers, stack(x)[0], strict=True):
        torch.testing.assert_close(got, want)
