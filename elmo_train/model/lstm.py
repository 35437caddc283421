"""Stacked LSTMs with projection and clipping, one stack per direction (bilm-tf's `LSTMCell`).

Per layer and direction, with bilm-tf's TensorFlow gate order i, j, f, o:

    i, j, f, o = split(x_t @ W_x + h_{t-1} @ W_h + b)
    c_t = clip(sigmoid(f + 1) * c_{t-1} + sigmoid(i) * tanh(j), cell_clip)
    h_t = clip((sigmoid(o) * tanh(c_t)) @ W_P, proj_clip)

The forget bias of 1 is added at run time and not stored, so the parameters map one to one
onto bilm-tf's `W_0`, `B` and `W_P_0` datasets. With `recurrent_bias` (Kim et al.'s Torch
LSTM) b is the sum of two stored vectors, `bias` and `bias_h`; `B` holds the sum.
Directions never exchange information: each direction has its own weights and reads its own
stream (the backward stream is reversed).
Both directions are advanced together with batched matmuls over a leading direction axis.
"""

import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from elmo_train.model.config import LSTMConfig


@dataclass
class LSTMState:
    """Recurrent state of every direction and layer: h `(D, L, B, P)`, c `(D, L, B, C)`."""

    h: torch.Tensor
    c: torch.Tensor

    def detach(self) -> "LSTMState":
        return LSTMState(self.h.detach(), self.c.detach())

    @property
    def batch_size(self) -> int:
        return self.h.shape[2]

    def reset_rows(self, rows: torch.Tensor) -> "LSTMState":
        """Zero the state of the batch rows where `rows` (B,) is true."""
        keep = (~rows).to(self.h.dtype).view(1, 1, -1, 1)
        return LSTMState(self.h * keep, self.c * keep)


class LSTMStack(nn.Module):
    """`n_layers` LSTM layers for each of `n_directions` directions.

    Input `(D, B, T, input_dim)`: one stream per direction. Returns every layer's output
    `(D, B, T, P)` (after the residual) and the final state.
    """

    def __init__(
        self,
        config: LSTMConfig,
        input_dim: int,
        n_directions: int,
        dropout: float,
        dropout_first_input: bool = True,
    ):
        super().__init__()
        self.config = config
        self.n_directions = n_directions
        self.dropout = dropout
        self.dropout_first_input = dropout_first_input
        cell, proj = config.dim, config.projection_dim
        self.has_projection = proj < cell
        self.weight_x = nn.ParameterList()  # (D, in, 4C)
        self.weight_h = nn.ParameterList()  # (D, P, 4C)
        self.bias = nn.ParameterList()  # (D, 4C)
        self.bias_h = nn.ParameterList()  # (D, 4C), only with config.recurrent_bias
        self.weight_proj = nn.ParameterList()  # (D, C, P), empty without projection
        for layer in range(config.n_layers):
            in_dim = input_dim if layer == 0 else proj
            self.weight_x.append(nn.Parameter(torch.empty(n_directions, in_dim, 4 * cell)))
            self.weight_h.append(nn.Parameter(torch.empty(n_directions, proj, 4 * cell)))
            self.bias.append(nn.Parameter(torch.empty(n_directions, 4 * cell)))
            if config.recurrent_bias:
                self.bias_h.append(nn.Parameter(torch.empty(n_directions, 4 * cell)))
            if self.has_projection:
                self.weight_proj.append(nn.Parameter(torch.empty(n_directions, cell, proj)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # TF's default glorot-uniform on the combined [input; h] kernel and on the projection.
        for w_x, w_h, b in zip(self.weight_x, self.weight_h, self.bias, strict=True):
            fan_in, fan_out = w_x.shape[1] + w_h.shape[1], w_x.shape[2]
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            nn.init.uniform_(w_x, -bound, bound)
            nn.init.uniform_(w_h, -bound, bound)
            nn.init.zeros_(b)
        for b_h in self.bias_h:
            nn.init.zeros_(b_h)
        for w_p in self.weight_proj:
            bound = math.sqrt(6.0 / (w_p.shape[1] + w_p.shape[2]))
            nn.init.uniform_(w_p, -bound, bound)

    def net_bias(self, layer: int) -> torch.Tensor:
        """The bias the cell adds before the forget gate's +1: `(D, 4C)`."""
        if self.config.recurrent_bias:
            return self.bias[layer] + self.bias_h[layer]
        return self.bias[layer]

    def zero_state(self, batch_size: int, like: torch.Tensor) -> LSTMState:
        shape = (self.n_directions, self.config.n_layers, batch_size)
        h = like.new_zeros(*shape, self.config.projection_dim)
        c = like.new_zeros(*shape, self.config.dim)
        return LSTMState(h, c)

    def forward(
        self,
        x: torch.Tensor,
        state: LSTMState | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], LSTMState]:
        """x `(D, B, T, in)`; mask `(D, B, T)` marks real steps (padding only at the end of a row).

        With a mask, a row's state stops changing after its last real step, so the final state
        is the state at each row's end (bilm-tf's `dynamic_rnn` with `sequence_length`).
        """
        if state is None:
            state = self.zero_state(x.shape[1], x)
        outputs, h_final, c_final = [], [], []
        for layer in range(self.config.n_layers):
            # bilm-tf's DropoutWrapper on every layer's input (Kim et al.: not the first).
            p = self.dropout if layer > 0 or self.dropout_first_input else 0.0
            layer_input = F.dropout(x, p, self.training)
            out, h, c = self._layer(layer, layer_input, state.h[:, layer], state.c[:, layer], mask)
            if layer > 0 and self.config.use_skip_connections:
                out = out + layer_input  # residual adds the dropped input, as bilm-tf
            outputs.append(out)
            h_final.append(h)
            c_final.append(c)
            x = out
        return outputs, LSTMState(torch.stack(h_final, 1), torch.stack(c_final, 1))

    def _layer(self, layer, x, h, c, mask):
        if self.config.impl == "fused" and mask is None:
            return self._fused_layer(layer, x, h, c)
        return self._clipped_layer(layer, x, h, c, mask)

    def _clipped_layer(self, layer, x, h, c, mask):
        D, B, T, _ = x.shape
        w_h = self.weight_h[layer]
        w_p = self.weight_proj[layer] if self.has_projection else None
        cell_clip, proj_clip = self.config.cell_clip, self.config.proj_clip
        # Input projections of all T steps in one matmul; `unbind` (not `pre[t]`) so backward
        # does not build a full-size zero gradient per step.
        pre = torch.baddbmm(
            self.net_bias(layer).unsqueeze(1), x.reshape(D, B * T, -1), self.weight_x[layer]
        )  # (D, B*T, 4C)
        steps = pre.view(D, B, T, -1).unbind(2)  # T x (D, B, 4C)
        step_masks = mask.unsqueeze(-1).unbind(2) if mask is not None else [None] * T
        fast = {"compiled": compiled_cell_update, "triton": triton_cell_update}
        update = fast.get(self.config.impl, cell_update)
        outputs = []
        for pre_t, mask_t in zip(steps, step_masks, strict=True):
            gates = torch.baddbmm(pre_t, h, w_h)  # (D, B, 4C)
            h_t, c_t = update(gates, c, cell_clip)  # (D, B, C) each
            if w_p is not None:
                h_t = torch.bmm(h_t, w_p)  # (D, B, P)
                if proj_clip is not None:  # TF clips the projection output only
                    h_t = h_t.clamp(-proj_clip, proj_clip)
            if mask_t is not None:
                h_t = torch.where(mask_t, h_t, h)
                c_t = torch.where(mask_t, c_t, c)
            h, c = h_t, c_t
            outputs.append(h)
        return torch.stack(outputs, dim=2), h, c  # (D, B, T, P)

    def _fused_layer(self, layer, x, h, c):
        """torch's LSTM kernel (cuDNN on GPU) on the same weights; no clipping by design."""
        cell = self.config.dim
        outputs, h_out, c_out = [], [], []
        for d in range(self.n_directions):
            if self.config.recurrent_bias:
                bias_h = _tf_gates_to_torch(self.bias_h[layer][d], cell)  # (4C,)
            else:
                bias_h = torch.zeros_like(self.bias[layer][d])
            params = [
                _tf_gates_to_torch(self.weight_x[layer][d].t(), cell),  # (4C, in)
                _tf_gates_to_torch(self.weight_h[layer][d].t(), cell),  # (4C, P)
                _tf_gates_to_torch(self._forget_biased(layer, d), cell),  # (4C,)
                bias_h,
            ]
            if self.has_projection:
                # contiguous: cuDNN copies each weight into its flat buffer through a view,
                # which a transposed one cannot give ("view size is not compatible ...").
                params.append(self.weight_proj[layer][d].t().contiguous())  # (P, C)
            hx = (h[d].unsqueeze(0).contiguous(), c[d].unsqueeze(0).contiguous())
            out, h_d, c_d = torch.lstm(x[d], hx, params, True, 1, 0.0, self.training, False, True)
            outputs.append(out)
            h_out.append(h_d[0])
            c_out.append(c_d[0])
        return torch.stack(outputs), torch.stack(h_out), torch.stack(c_out)

    def _forget_biased(self, layer: int, direction: int) -> torch.Tensor:
        cell = self.config.dim
        bias = self.bias[layer][direction]
        return torch.cat([bias[: 2 * cell], bias[2 * cell : 3 * cell] + 1.0, bias[3 * cell :]])


def cell_update(
    gates: torch.Tensor, c: torch.Tensor, cell_clip: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pointwise part of a step: gates `(D, B, 4C)` and c `(D, B, C)` to (h before the
    projection, new c), both `(D, B, C)`."""
    i, j, f, o = gates.chunk(4, dim=-1)
    c_t = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(j)
    if cell_clip is not None:
        c_t = c_t.clamp(-cell_clip, cell_clip)
    return torch.sigmoid(o) * torch.tanh(c_t), c_t


class _FastCellUpdate(ABC):
    """`cell_update` computed by a faster callable built on first use; `cell_update` itself,
    after one warning, where building or running that fails (no C++ compiler, no GPU for
    Triton, an unsupported GPU): the same function either way."""

    impl = ""

    def __init__(self) -> None:
        self.fast = None
        self.failed = False

    @abstractmethod
    def build(self):
        """The faster callable with `cell_update`'s signature (it may raise: eager then)."""

    def __call__(self, gates, c, cell_clip):
        if not self.failed:
            try:
                self.fast = self.fast or self.build()
                return self.fast(gates, c, cell_clip)
            except Exception as error:  # noqa: BLE001 - any backend failure: run eager instead
                self.failed = True
                first_line = (str(error).splitlines() or [""])[0]
                warnings.warn(
                    f"model.lstm.impl={self.impl}: {type(error).__name__}: {first_line}; "
                    "using the eager cell",
                    stacklevel=2,
                )
        return cell_update(gates, c, cell_clip)


class _CompiledCellUpdate(_FastCellUpdate):
    """One fused kernel forward and one backward generated by torch.compile."""

    impl = "compiled"

    def build(self):
        return torch.compile(cell_update)


class _TritonCellUpdate(_FastCellUpdate):
    """One hand-written Triton kernel forward and one backward (`model/triton_cell.py`)."""

    impl = "triton"

    def build(self):
        from elmo_train.model import triton_cell  # lazy: importing triton takes seconds

        return triton_cell.cell_update


compiled_cell_update = _CompiledCellUpdate()
triton_cell_update = _TritonCellUpdate()


def _tf_gates_to_torch(w: torch.Tensor, cell: int) -> torch.Tensor:
    """Reorder gate blocks along dim 0 from TensorFlow's i, j, f, o to torch's i, f, g(=j), o."""
    i, j, f, o = w.split(cell, dim=0)
    return torch.cat([i, f, j, o])
