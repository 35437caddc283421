"""A straightforward reference biLM, written the way AllenNLP runs ELMo, for `benchmark.py`.

It computes the same function as `elmo_train.model` (weights copied over with
`load_from_ours`), but with none of our optimisations:

* character CNN on every token position, one `Conv1d` per width, `torch.max` over time, as
  AllenNLP's `_ElmoCharacterEncoder` (no per-batch deduplication);
* highway as AllenNLP's `Highway` (one `Linear(d, 2d)`, gate on the carried input);
* LSTM cell as AllenNLP's `LstmCellWithProjection`: per step an input linearity and a state
  linearity, gates i, f, g, o, cell clip, projection, projection clip; stacked as `ElmoLstm`
  (residual from the second layer on), one direction and one layer at a time;
* sampled softmax as AllenNLP's `SampledSoftmaxLoss`: unique log-uniform negatives drawn on
  the CPU by numpy rejection sampling in a Python loop, dense gradients.

Like AllenNLP's `_ElmoBiLm`, the reference encodes each token position once and runs the
backward LSTM right to left over the same tokens, so it needs `bwd_chars == fwd_chars` reversed
in time (`reference.workload.make_batch` builds such batches). The LSTM loop collects outputs in a list
instead of AllenNLP's per-step `clone()` and masked writes, which perf-cpu.md §1 measured as
×1.04–1.08 faster than AllenNLP's own class: speedups against this reference are conservative.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from elmo_train.model import softmax as our_softmax
from elmo_train.model.bilm import LanguageModel as OurLanguageModel
from elmo_train.model.config import BiLMConfig

ChoiceFunc = Callable[[int, int], tuple[np.ndarray, int]]


class Highway(nn.Module):
    """AllenNLP `Highway`: y = g * x + (1 - g) * relu(A x), [A; G] in one `Linear(d, 2d)`."""

    def __init__(self, dim: int, n_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(n_layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            nonlinear, gate = layer(x).chunk(2, dim=-1)
            gate = torch.sigmoid(gate)
            x = gate * x + (1 - gate) * torch.relu(nonlinear)
        return x


class CharEncoder(nn.Module):
    """AllenNLP `_ElmoCharacterEncoder` on `(B, T, 50)` char ids: every token through the CNN."""

    def __init__(self, config: BiLMConfig) -> None:
        super().__init__()
        cnn = config.char_cnn
        self.activation = torch.relu if cnn.activation == "relu" else torch.tanh
        self.char_embedding = nn.Parameter(torch.zeros(262, cnn.embedding_dim))
        self.convs = nn.ModuleList(
            nn.Conv1d(cnn.embedding_dim, n, width) for width, n in cnn.filters
        )
        self.highway = Highway(cnn.n_filters, cnn.n_highway)
        proj = config.lstm.projection_dim
        self.projection = nn.Linear(cnn.n_filters, proj) if cnn.n_filters != proj else None

    def forward(self, char_ids: Tensor) -> Tensor:
        B, T, L = char_ids.shape
        # padding_idx keeps the all-zero padding row fixed, as our encoder (AllenNLP lets its
        # gradient through, which would make the two models train different functions).
        x = F.embedding(char_ids.reshape(-1, L), self.char_embedding, padding_idx=0)  # (N, L, e)
        x = x.transpose(1, 2)  # (N, e, L)
        pooled = []
        for conv in self.convs:
            convolved, _ = torch.max(conv(x), dim=-1)  # (N, n_i)
            pooled.append(self.activation(convolved))
        h = self.highway(torch.cat(pooled, dim=-1))  # (N, n_filters)
        if self.projection is not None:
            h = self.projection(h)
        return h.view(B, T, -1)  # (B, T, P)


class LstmCellWithProjection(nn.Module):
    """AllenNLP's cell (gates i, f, g, o; forget bias stored in `state_linearity.bias`)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        cell_size: int,
        go_forward: bool,
        memory_cell_clip_value: float | None,
        state_projection_clip_value: float | None,
    ) -> None:
        super().__init__()
        self.cell_size = cell_size
        self.hidden_size = hidden_size
        self.go_forward = go_forward
        self.cell_clip = memory_cell_clip_value
        self.proj_clip = state_projection_clip_value
        self.input_linearity = nn.Linear(input_size, 4 * cell_size, bias=False)
        self.state_linearity = nn.Linear(hidden_size, 4 * cell_size, bias=True)
        # An LSTM without projection (hidden == cell) outputs o * tanh(c) directly.
        self.state_projection = (
            nn.Linear(cell_size, hidden_size, bias=False) if hidden_size < cell_size else None
        )

    def forward(self, inputs: Tensor) -> Tensor:
        """inputs `(B, T, in)`, all rows full length, zero initial state; returns `(B, T, P)`."""
        B, T, _ = inputs.shape
        C = self.cell_size
        memory = inputs.new_zeros(B, C)
        state = inputs.new_zeros(B, self.hidden_size)
        outputs: list[Tensor] = [inputs.new_empty(0)] * T
        for step in range(T):
            index = step if self.go_forward else T - step - 1
            projected_input = self.input_linearity(inputs[:, index])  # (B, 4C)
            projected_state = self.state_linearity(state)  # (B, 4C)
            gates = projected_input + projected_state
            input_gate = torch.sigmoid(gates[:, 0 * C : 1 * C])
            forget_gate = torch.sigmoid(gates[:, 1 * C : 2 * C])
            memory_init = torch.tanh(gates[:, 2 * C : 3 * C])
            output_gate = torch.sigmoid(gates[:, 3 * C : 4 * C])
            memory = input_gate * memory_init + forget_gate * memory
            if self.cell_clip is not None:
                memory = torch.clamp(memory, -self.cell_clip, self.cell_clip)
            state = output_gate * torch.tanh(memory)  # (B, C)
            if self.state_projection is not None:
                state = self.state_projection(state)  # (B, P)
                if self.proj_clip is not None:
                    state = torch.clamp(state, -self.proj_clip, self.proj_clip)
            outputs[index] = state
        return torch.stack(outputs, dim=1)


class ElmoLstm(nn.Module):
    """AllenNLP `ElmoLstm._lstm_forward`: per layer a forward and a backward cell."""

    def __init__(self, config: BiLMConfig, n_directions: int) -> None:
        super().__init__()
        lstm = config.lstm
        self.use_skip_connections = lstm.use_skip_connections
        self.directions = nn.ModuleList()
        for go_forward in [True, False][:n_directions]:
            self.directions.append(
                nn.ModuleList(
                    LstmCellWithProjection(
                        lstm.projection_dim,
                        lstm.projection_dim,
                        lstm.dim,
                        go_forward,
                        lstm.cell_clip,
                        lstm.proj_clip,
                    )
                    for _ in range(lstm.n_layers)
                )
            )

    def forward(self, tokens: Tensor) -> list[list[Tensor]]:
        """tokens `(B, T, P)` -> `[direction][layer]` outputs `(B, T, P)` in sentence order."""
        result = []
        for cells in self.directions:
            x, per_layer = tokens, []
            for layer, cell in enumerate(cells):
                out = cell(x)
                if layer > 0 and self.use_skip_connections:
                    out = out + x
                per_layer.append(out)
                x = out
            result.append(per_layer)
        return result


class BiLM(nn.Module):
    def __init__(self, config: BiLMConfig) -> None:
        super().__init__()
        self.n_directions = 2 if config.bidirectional else 1
        self.char_encoder = CharEncoder(config)
        self.lstm = ElmoLstm(config, self.n_directions)

    def forward(self, char_ids: Tensor) -> tuple[Tensor, list[list[Tensor]]]:
        tokens = self.char_encoder(char_ids)  # (B, T, P), once for both directions
        return tokens, self.lstm(tokens)


def choice(num_words: int, num_samples: int) -> tuple[np.ndarray, int]:
    """AllenNLP's `_choice`: unique log-uniform ids by rejection, one Python step per draw."""
    num_tries = 0
    samples: set[int] = set()

    def buffer() -> np.ndarray:
        log_samples = np.random.rand(num_samples) * np.log(num_words + 1)
        return np.clip(np.exp(log_samples).astype("int64") - 1, 0, num_words - 1)

    draws, position = buffer(), 0
    while len(samples) < num_samples:
        num_tries += 1
        samples.add(int(draws[position]))
        position += 1
        if position == num_samples:
            draws, position = buffer(), 0
    return np.array(sorted(samples), dtype=np.int64), num_tries


class SampledSoftmaxLoss(nn.Module):
    """AllenNLP `SampledSoftmaxLoss` (dense): summed NLL; full softmax in eval mode.

    Two deliberate deviations that change no cost: expected counts in float64 (AllenNLP's
    float32 `log((k + 2) / (k + 1))` is ~0.5 % off near k = 1e5) and no `+ 1e-7` inside their
    log, so the reference computes exactly TF's (and our) corrected logits.
    """

    def __init__(self, num_words: int, hidden_dim: int, num_samples: int) -> None:
        super().__init__()
        assert num_samples < num_words
        self.softmax_w = nn.Parameter(torch.randn(num_words, hidden_dim) / hidden_dim**0.5)
        self.softmax_b = nn.Parameter(torch.zeros(num_words))
        self.num_words = num_words
        self.num_samples = num_samples
        self.choice_func: ChoiceFunc = choice

    def _expected_count(self, ids: Tensor, num_tries: int, dtype: torch.dtype) -> Tensor:
        probs = torch.log((ids.double() + 2.0) / (ids.double() + 1.0)) / np.log(self.num_words + 1)
        return (-torch.expm1(num_tries * torch.log1p(-probs))).to(dtype)

    def forward(self, embeddings: Tensor, targets: Tensor) -> Tensor:
        if not self.training:
            logits = embeddings @ self.softmax_w.t() + self.softmax_b  # (N, V)
            return F.cross_entropy(logits, targets, reduction="sum")
        np_ids, num_tries = self.choice_func(self.num_words, self.num_samples)
        sampled_ids = torch.from_numpy(np_ids).to(targets.device)  # (S,)
        all_ids = torch.cat([targets, sampled_ids])
        all_w = F.embedding(all_ids, self.softmax_w)  # (N + S, H), dense gradient
        all_b = F.embedding(all_ids, self.softmax_b.unsqueeze(1)).squeeze(1)
        N, dtype = targets.shape[0], embeddings.dtype
        true_w, sampled_w = all_w[:N], all_w[N:]
        true_b, sampled_b = all_b[:N], all_b[N:]
        true_logits = (true_w * embeddings).sum(dim=1) + true_b
        true_logits = true_logits - self._expected_count(targets, num_tries, dtype).log()
        sampled_logits = embeddings @ sampled_w.t() + sampled_b  # (N, S)
        sampled_logits = sampled_logits - self._expected_count(sampled_ids, num_tries, dtype).log()
        hits = sampled_ids == targets.unsqueeze(1)  # accidental hits
        sampled_logits = sampled_logits.masked_fill(hits, -10000.0)
        logits = torch.cat([true_logits.unsqueeze(1), sampled_logits], dim=1)  # (N, 1 + S)
        return -F.log_softmax(logits, dim=1)[:, 0].sum()


class LanguageModel(nn.Module):
    """Reference biLM + one sampled softmax shared by both directions (AllenNLP LM loss)."""

    def __init__(self, config: BiLMConfig, vocab_size: int) -> None:
        super().__init__()
        self.bilm = BiLM(config)
        self.softmax = SampledSoftmaxLoss(
            vocab_size, config.lstm.projection_dim, config.softmax.n_negatives
        )

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Mean over directions of the per-token NLL (all positions real, as in stream mode)."""
        _, layers = self.bilm(batch.fwd_chars)
        targets = [batch.fwd_targets, batch.bwd_targets.flip(1)]  # sentence order
        losses = []
        for per_layer, target in zip(layers, targets, strict=False):
            hidden = per_layer[-1].reshape(-1, per_layer[-1].shape[-1])  # (B*T, P)
            losses.append(self.softmax(hidden, target.reshape(-1)) / target.numel())
        return torch.stack(losses).mean()


def _tf_gates_to_allennlp(w: Tensor, cell: int) -> Tensor:
    """Reorder gate blocks along the last dim from TF's i, j, f, o to AllenNLP's i, f, g, o."""
    i, j, f, o = w.split(cell, dim=-1)
    return torch.cat([i, f, j, o], dim=-1)


def _allennlp_gates_to_tf(w: Tensor, cell: int) -> Tensor:
    i, f, g, o = w.split(cell, dim=-1)
    return torch.cat([i, g, f, o], dim=-1)


def _cells(ref_bilm: BiLM, layer: int) -> list[LstmCellWithProjection]:
    return [cells[layer] for cells in ref_bilm.lstm.directions]


@torch.no_grad()
def load_from_ours(ref: BiLM | LanguageModel, ours: nn.Module) -> None:
    """Copy the weights of our `BiLM` / `LanguageModel` into the matching reference model.

    Gates go from bilm-tf's `x @ W`, order i, j, f, o to AllenNLP's `W x`, order i, f, g, o,
    with the forget bias of 1 (added at run time by us) folded into the state bias; the
    highway gate is negated (AllenNLP's gate carries x, bilm-tf's weights the transform).
    """
    ref_bilm, our_bilm = (ref.bilm, ours.bilm) if isinstance(ref, LanguageModel) else (ref, ours)
    enc, ref_enc = our_bilm.char_encoder, ref_bilm.char_encoder
    ref_enc.char_embedding.copy_(enc.embedding.weight)
    for conv, ref_conv in zip(enc.convs, ref_enc.convs, strict=True):
        ref_conv.load_state_dict(conv.state_dict())
    for highway, layer in zip(enc.highways, ref_enc.highway.layers, strict=True):
        layer.weight.copy_(torch.cat([highway.transform.weight, -highway.gate.weight]))
        layer.bias.copy_(torch.cat([highway.transform.bias, -highway.gate.bias]))
    if enc.projection is not None:
        ref_enc.projection.load_state_dict(enc.projection.state_dict())
    stack, cell = our_bilm.lstm, our_bilm.config.lstm.dim
    for layer in range(stack.config.n_layers):
        for d, ref_cell in enumerate(_cells(ref_bilm, layer)):
            bias = stack.bias[layer][d].clone()  # (4C,)
            bias[2 * cell : 3 * cell] += 1.0
            ref_cell.input_linearity.weight.copy_(
                _tf_gates_to_allennlp(stack.weight_x[layer][d], cell).t()
            )
            ref_cell.state_linearity.weight.copy_(
                _tf_gates_to_allennlp(stack.weight_h[layer][d], cell).t()
            )
            ref_cell.state_linearity.bias.copy_(_tf_gates_to_allennlp(bias, cell))
            if ref_cell.state_projection is not None:
                ref_cell.state_projection.weight.copy_(stack.weight_proj[layer][d].t())
    if isinstance(ref, LanguageModel):
        ref.softmax.softmax_w.copy_(ours.output.weight)
        ref.softmax.softmax_b.copy_(ours.output.bias)


def _gate_grads(
    cells: list[LstmCellWithProjection], param: Callable[[LstmCellWithProjection], Tensor]
) -> Tensor:
    """Gradients of one gate parameter of every direction in our layout: `(D, ..., 4C)`."""
    return torch.stack([_allennlp_gates_to_tf(param(c).grad.t(), c.cell_size) for c in cells])


def grads_in_our_layout(ref: BiLM | LanguageModel) -> dict[str, Tensor]:
    """The reference's gradients, keyed and shaped like our model's `named_parameters()`."""
    ref_bilm = ref.bilm if isinstance(ref, LanguageModel) else ref
    prefix = "bilm." if isinstance(ref, LanguageModel) else ""
    enc = ref_bilm.char_encoder
    grads = {"char_encoder.embedding.weight": enc.char_embedding.grad}
    for k, conv in enumerate(enc.convs):
        grads[f"char_encoder.convs.{k}.weight"] = conv.weight.grad
        grads[f"char_encoder.convs.{k}.bias"] = conv.bias.grad
    for k, layer in enumerate(enc.highway.layers):
        d = layer.in_features
        grads[f"char_encoder.highways.{k}.transform.weight"] = layer.weight.grad[:d]
        grads[f"char_encoder.highways.{k}.transform.bias"] = layer.bias.grad[:d]
        grads[f"char_encoder.highways.{k}.gate.weight"] = -layer.weight.grad[d:]
        grads[f"char_encoder.highways.{k}.gate.bias"] = -layer.bias.grad[d:]
    if enc.projection is not None:
        grads["char_encoder.projection.weight"] = enc.projection.weight.grad
        grads["char_encoder.projection.bias"] = enc.projection.bias.grad
    for layer in range(len(ref_bilm.lstm.directions[0])):
        cells = _cells(ref_bilm, layer)
        grads[f"lstm.weight_x.{layer}"] = _gate_grads(cells, lambda c: c.input_linearity.weight)
        grads[f"lstm.weight_h.{layer}"] = _gate_grads(cells, lambda c: c.state_linearity.weight)
        grads[f"lstm.bias.{layer}"] = _gate_grads(cells, lambda c: c.state_linearity.bias)
        if cells[0].state_projection is not None:
            grads[f"lstm.weight_proj.{layer}"] = torch.stack(
                [c.state_projection.weight.grad.t() for c in cells]
            )
    grads = {prefix + name: grad for name, grad in grads.items()}
    if isinstance(ref, LanguageModel):
        grads["output.weight"] = ref.softmax.softmax_w.grad
        grads["output.bias"] = ref.softmax.softmax_b.grad
    return grads


@contextmanager
def recorded_negatives(replay: list[tuple[np.ndarray, int]]) -> Iterator[None]:
    """Record the negatives our sampled softmax draws, for replay into the reference.

    Our sampler draws `n` ids with replacement and masks repeats; the unique ids with
    `num_tries = n` give the reference exactly the same candidates and expected counts.
    """
    original = our_softmax.sample_log_uniform

    def recording(n_draws: int, vocab_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
        ids, first = original(n_draws, vocab_size, device)
        replay.append((ids[first].cpu().numpy(), n_draws))
        return ids, first

    our_softmax.sample_log_uniform = recording
    try:
        yield
    finally:
        our_softmax.sample_log_uniform = original


def replaying_choice(replay: list[tuple[np.ndarray, int]]) -> ChoiceFunc:
    """A `choice_func` that hands out recorded negatives in order instead of sampling."""
    queue = list(replay)

    def choice_func(num_words: int, num_samples: int) -> tuple[np.ndarray, int]:
        return queue.pop(0)

    return choice_func


def build_like(ours: nn.Module) -> BiLM | LanguageModel:
    """A reference model with our model's config, dtype, device and weights."""
    if isinstance(ours, OurLanguageModel):
        ref: BiLM | LanguageModel = LanguageModel(ours.config, ours.vocab_size)
    else:
        ref = BiLM(ours.config)
    weight = next(ours.parameters())
    ref = ref.to(device=weight.device, dtype=weight.dtype)
    load_from_ours(ref, ours)
    return ref
