import pytest
import torch
from lstm_helpers import clipped_stack

from elmo_train.model import lstm as lstm_module
from elmo_train.model.config import LSTMConfig
from elmo_train.model.lstm import LSTMStack


def reference_step_loop(stack: LSTMStack, x: torch.Tensor) -> list[torch.Tensor]:
    """The math of bilm-tf's LSTMCell written out one direction, one step at a time."""
    cfg = stack.config
    outputs = []
    for d in range(stack.n_directions):
        layer_input = x[d]  # (B, T, in)
        per_layer = []
        for layer in range(cfg.n_layers):
            B, T, _ = layer_input.shape
            h = layer_input.new_zeros(B, cfg.projection_dim)
            c = layer_input.new_zeros(B, cfg.dim)
            steps = []
            for t in range(T):
                gates = layer_input[:, t] @ stack.weight_x[layer][d] + h @ stack.weight_h[layer][d]
                i, j, f, o = (gates + stack.bias[layer][d]).chunk(4, -1)
                c = torch.sigmoid(f + 1) * c + torch.sigmoid(i) * torch.tanh(j)
                if cfg.cell_clip is not None:
                    c = c.clamp(-cfg.cell_clip, cfg.cell_clip)
                h = torch.sigmoid(o) * torch.tanh(c)
                if stack.has_projection:
                    h = h @ stack.weight_proj[layer][d]
                    if cfg.proj_clip is not None:
                        h = h.clamp(-cfg.proj_clip, cfg.proj_clip)
                steps.append(h)
            out = torch.stack(steps, 1)
            if layer > 0 and cfg.use_skip_connections:
                out = out + layer_input
            per_layer.append(out)
            layer_input = out
        outputs.append(per_layer)
    return [
        torch.stack([outputs[d][layer] for d in range(stack.n_directions)])
        for layer in range(cfg.n_layers)
    ]


@pytest.mark.parametrize("clip", [0.5, None])
def test_clipped_path_matches_step_loop(clip):
    stack = clipped_stack(cell_clip=clip, proj_clip=clip)
    x = torch.randn(2, 3, 7, 8, dtype=torch.double)
    layers, _ = stack(x)
    expected = reference_step_loop(stack, x)
    for got, want in zip(layers, expected, strict=True):
        torch.testing.assert_close(got, want)
    if clip is not None:
        assert layers[0].abs().max() <= clip + 1e-12


@pytest.mark.parametrize("impl", ["clipped", "fused"])
def test_recurrent_bias_is_one_bias_of_their_sum_and_each_gets_the_whole_gradient(impl):
    """Kim's (Torch's) two bias vectors compute the cell of one bias holding their sum; each
    gets that bias's whole gradient, so SGD moves the net bias twice as far."""
    two = clipped_stack(cell_clip=None, proj_clip=None, recurrent_bias=True, impl=impl)
    with torch.no_grad():
        for bias_h in two.bias_h:
            bias_h.normal_()
    one = clipped_stack(cell_clip=None, proj_clip=None, impl=impl)
    shared = {k: v for k, v in two.state_dict().items() if not k.startswith("bias_h")}
    one.load_state_dict(shared)
    with torch.no_grad():
        for layer in range(2):
            one.bias[layer].copy_(two.net_bias(layer))
    x = torch.randn(2, 3, 6, 8, dtype=torch.double)
    (out_two, state_two), (out_one, state_one) = two(x), one(x)
    for a, b in zip(out_two, out_one, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(state_two.c, state_one.c)
    out_two[-1].sum().backward()
    for layer in range(2):
        assert two.bias_h[layer].grad.abs().sum() > 0
        torch.testing.assert_close(two.bias_h[layer].grad, two.bias[layer].grad)


def test_fused_path_matches_clipped_path_without_clipping():
    stack = clipped_stack(cell_clip=None, proj_clip=None)
    x = torch.randn(2, 3, 6, 8, dtype=torch.double, requires_grad=True)
    clipped, clipped_state = stack(x)
    stack.config.impl = "fused"
    fused, fused_state = stack(x)
    for a, b in zip(clipped, fused, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(clipped_state.c, fused_state.c)
    grad_fused = torch.autograd.grad(fused[-1].sum(), x)[0]
    stack.config.impl = "clipped"
    grad_clipped = torch.autograd.grad(stack(x)[0][-1].sum(), x)[0]
    torch.testing.assert_close(grad_fused, grad_clipped)


@pytest.mark.slow  # torch.compile builds C++ kernels (~30 s the first time on 2 cores)
def test_compiled_path_matches_clipped_path_values_and_gradients(monkeypatch):
    # A cell compiled here, and checked to be: after a fallback the eager cell would only be
    # compared with itself (a stale inductor cache did that under ATEN_CPU_CAPABILITY=default).
    cell = lstm_module._CompiledCellUpdate()
    monkeypatch.setattr(lstm_module, "compiled_cell_update", cell)
    stack = clipped_stack(cell_clip=0.5, proj_clip=0.5)
    x = torch.randn(2, 3, 6, 8, dtype=torch.double, requires_grad=True)
    results = {}
    for impl in ("clipped", "compiled"):
        stack.config.impl = impl
        layers, state = stack(x)
        results[impl] = [*layers, state.c, *torch.autograd.grad(layers[-1].sum(), x)]
    assert not cell.failed, "torch.compile failed: the compiled cell was not tested"
    # Any CPU: in float64 the kernels differ by <= 4e-14 (AVX-512, AVX2 and scalar kernels
    # measured), far inside the default 1e-7 tolerance.
    for a, b in zip(results["clipped"], results["compiled"], strict=True):
        torch.testing.assert_close(a, b)


def test_compiled_path_falls_back_to_eager_with_one_warning(monkeypatch):
    def broken_compile(fn, **kwargs):
        def fails(*args):
            raise RuntimeError("no C++ compiler")

        return fails

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(lstm_module, "compiled_cell_update", lstm_module._CompiledCellUpdate())
    stack = clipped_stack(cell_clip=0.5, proj_clip=0.5, impl="compiled")
    x = torch.randn(2, 3, 6, 8, dtype=torch.double)
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler") as caught:
        layers, _ = stack(x)
    assert len(caught) == 1  # warned once, not once per step
    for got, want in zip(layers, reference_step_loop(stack, x), strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("first", [True, False])
def test_dropout_on_the_first_layer_input_only_when_asked(first):
    config = LSTMConfig(dim=24, projection_dim=8, n_layers=2)
    stack = LSTMStack(config, input_dim=8, n_directions=2, dropout=0.5, dropout_first_input=first)
    x = torch.randn(2, 3, 6, 8)
    eval_layers, _ = stack.eval()(x)
    train_layers, _ = stack.train()(x)
    assert torch.equal(train_layers[0], eval_layers[0]) is not first  # Kim et al.: not dropped
    assert not torch.equal(train_layers[1], eval_layers[1])  # the second layer's input always


def test_state_carry_equals_one_long_sequence():
    """Two windows with the carried state equal one run over the concatenated window."""
    stack = clipped_stack(cell_clip=1.0, proj_clip=1.0)
    x = torch.randn(2, 3, 10, 8, dtype=torch.double)
    whole, whole_state = stack(x)
    first, state = stack(x[:, :, :4])
    second, second_state = stack(x[:, :, 4:], state)
    torch.testing.assert_close(torch.cat([first[-1], second[-1]], dim=2), whole[-1])
    torch.testing.assert_close(second_state.h, whole_state.h)


def test_mask_freezes_state_after_row_end():
    stack = clipped_stack(cell_clip=1.0, proj_clip=1.0)
    x = torch.randn(2, 2, 6, 8, dtype=torch.double)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3]).expand(2, 2, 6)
    _, state = stack(x, mask=mask)
    _, short_state = stack(x[:, 1:2, :3])
    torch.testing.assert_close(state.h[:, :, 1:2], short_state.h)
    torch.testing.assert_close(state.c[:, :, 1:2], short_state.c)


def test_reset_rows_zeroes_only_those_rows():
    stack = clipped_stack()
    _, state = stack(torch.randn(2, 3, 4, 8, dtype=torch.double))
    reset = state.reset_rows(torch.tensor([False, True, False]))
    assert reset.h[:, :, 1].abs().sum() == 0 and reset.c[:, :, 1].abs().sum() == 0
    torch.testing.assert_close(reset.h[:, :, 0], state.h[:, :, 0])
