"""The biLM: one character encoder and one output layer shared by a forward and a backward LM.

`BiLM` maps characters to the per-layer activations ELMo uses; `LanguageModel` adds the output
layer and the training loss on a `Batch` (`model/batch.py`).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from elmo_train.model.batch import Batch
from elmo_train.model.char_encoder import CharEncoder
from elmo_train.model.config import BiLMConfig
from elmo_train.model.lstm import LSTMStack, LSTMState
from elmo_train.model.softmax import build_output_layer


@dataclass
class BiLMOutput:
    activations: list[torch.Tensor]  # n_layers + 1 tensors (B, T, D*P); layer 0 = token layer
    mask: torch.Tensor  # (B, T) real tokens
    state: LSTMState


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first `lengths[b]` steps of each row of `x` (B, T, ...); padding stays put."""
    B, T = x.shape[:2]
    steps = torch.arange(T, device=x.device).expand(B, T)  # (B, T)
    source = torch.where(steps < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - steps, steps)
    index = source.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class BiLM(nn.Module):
    def __init__(self, config: BiLMConfig):
        super().__init__()
        self.config = config
        self.n_directions = 2 if config.bidirectional else 1
        cnn = config.char_cnn
        token_dim = config.lstm.projection_dim if cnn.projection else cnn.n_filters
        self.char_encoder = CharEncoder(cnn, token_dim)
        self.lstm = LSTMStack(
            config.lstm,
            token_dim,
            self.n_directions,
            config.dropout,
            config.dropout_token_embeddings,
        )

    @property
    def output_dim(self) -> int:
        return self.n_directions * self.config.lstm.projection_dim

    @property
    def n_layers(self) -> int:
        return self.config.lstm.n_layers

    @property
    def has_elmo_layers(self) -> bool:
        """Whether the token layer and the LSTM layers have one width, so ELMo can mix them
        (not so for a Kim et al. language model without the token projection)."""
        return self.char_encoder.output_dim == self.config.lstm.projection_dim

    def run_streams(
        self,
        fwd_chars: torch.Tensor,
        bwd_chars: torch.Tensor | None = None,
        state: LSTMState | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], LSTMState]:
        """Each direction reads its own left-to-right stream of char ids `(B, T, 50)`.

        Returns token embeddings and every LSTM layer's output, `(D, B, T, P)` each, and the
        final state. `mask (D, B, T)` marks real steps when rows end in padding.
        """
        streams = [fwd_chars] if self.n_directions == 1 else [fwd_chars, bwd_chars]
        tokens = self.char_encoder(torch.stack(streams))  # (D, B, T, P), one CNN pass for both
        layers, state = self.lstm(tokens, state, mask)
        return tokens, layers, state

    def forward(self, char_ids: torch.Tensor, state: LSTMState | None = None) -> BiLMOutput:
        """Sentences `(B, T, 50)` with `<S>`/`</S>`, right-padded with all-zero tokens.

        The backward LM reads each sentence reversed; its outputs are flipped back so position
        t of every layer describes token t. Padding positions are zero.
        """
        if not self.has_elmo_layers:
            raise ValueError("model.char_cnn.projection=false: no ELMo layers of one width")
        mask = (char_ids > 0).any(dim=-1)  # (B, T)
        lengths = mask.sum(dim=1)
        bwd_chars = reverse_padded(char_ids, lengths) if self.n_directions == 2 else None
        step_mask = mask.unsqueeze(0).expand(self.n_directions, -1, -1)  # (D, B, T)
        tokens, layers, state = self.run_streams(char_ids, bwd_chars, state, step_mask)
        keep = mask.unsqueeze(-1).to(tokens.dtype)  # (B, T, 1)
        token_layer = torch.cat([tokens[0]] * self.n_directions, dim=-1)  # (B, T, D*P)
        activations = [token_layer * keep]
        for layer in layers:
            directions = [layer[0]]
            if self.n_directions == 2:
                directions.append(reverse_padded(layer[1], lengths))
            activations.append(torch.cat(directions, dim=-1) * keep)  # (B, T, D*P)
        return BiLMOutput(activations, mask, state)


@dataclass
class LMOutput:
    """Per-direction mean NLL over real targets, the target counts, and the carried state."""

    nll: list[torch.Tensor]  # [forward, backward?] scalars
    n_targets: torch.Tensor  # (,) real target positions per direction
    state: LSTMState

    @property
    def loss(self) -> torch.Tensor:
        """bilm-tf's total loss: the mean of the directions' cross-entropies."""
        return torch.stack(self.nll).mean()


class LanguageModel(nn.Module):
    """BiLM + shared output layer; the loss of bilm-tf's `_build_loss`."""

    def __init__(self, config: BiLMConfig, vocab_size: int):
        super().__init__()
        self.config = config
        self.bilm = BiLM(config)
        self.output = build_output_layer(config.softmax, config.lstm.projection_dim, vocab_size)
        if config.init_uniform is not None:
            self.init_uniform(config.init_uniform)

    @torch.no_grad()
    def init_uniform(self, a: float) -> None:
        """Kim et al.'s initialisation: every parameter uniform in [-a, a], with their
        constant biases (forget gate 0, highway transform gate -2) on top."""
        for param in self.parameters():
            param.uniform_(-a, a)
        self.bilm.char_encoder.embedding.weight[0].zero_()  # the padding token stays zero
        self.bilm.char_encoder.zero_padding_char_()
        # The cell adds bilm-tf's forget bias of 1 at run time; Kim's LSTM has none, so the
        # stored forget-gate bias starts 1 lower (with `recurrent_bias`, as Kim's i2h and h2h
        # biases, the net bias is the sum of two uniform draws).
        cell = self.config.lstm.dim
        for bias in self.bilm.lstm.bias:  # (D, 4C), gates i, j, f, o
            bias[:, 2 * cell : 3 * cell] -= 1.0
        # Kim et al. also start the highway transform gate's bias at -2 (carry the input).
        for highway in self.bilm.char_encoder.highways:
            highway.gate.bias -= 2.0

    @property
    def vocab_size(self) -> int:
        return self.output.vocab_size

    def forward(self, batch: Batch, state: LSTMState | None = None) -> LMOutput:
        """Per-direction NLL of `batch`'s targets, starting from `state` (None: zero state)."""
        B, T = batch.fwd_targets.shape
        directions = ["fwd", "bwd"][: self.bilm.n_directions]
        bwd_chars = batch.bwd_chars if len(directions) == 2 else None
        _, layers, state = self.bilm.run_streams(batch.fwd_chars, bwd_chars, state)
        top = F.dropout(layers[-1], self.config.dropout, self.training)  # (D, B, T, P)
        # Padding positions are computed and weighted zero: no data-dependent shapes, so no
        # device sync in the training step.
        weight = batch.mask.reshape(-1).to(top.dtype)  # (B*T,)
        n_targets = weight.sum()
        targets = [batch.fwd_targets, batch.bwd_targets]
        nll = []
        for d in range(len(directions)):
            hidden = top[d].reshape(B * T, -1)  # (B*T, P)
            token_nll = self.output(hidden, targets[d].reshape(-1))  # (B*T,)
            nll.append((token_nll * weight).sum() / n_targets.clamp(min=1))
        return LMOutput(nll, n_targets, state)
