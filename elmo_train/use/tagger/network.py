"""The tagger: the ELMo paper's NER model (Peters et al. 2018 §4, after Lample et al. 2016 and
Peters et al. 2017), pure torch.

Per token, a char CNN and a trainable word embedding, concatenated with the biLM features; a
2-layer BiLSTM; a linear map to tag scores; a linear-chain CRF. The biLM features are its
precomputed layers (`features.py`): with `elmo` they go through the learned scalar mix of our
`Elmo` (softmax-normalised weights and gamma, then dropout); with `token` only the token layer
is used (then dropout); with `none` there is no biLM.
"""

from dataclasses import dataclass

import torch
from torch import nn

from elmo_train.model.bilm import reverse_padded
from elmo_train.model.char_encoder import CharEncoder
from elmo_train.model.config import CharCNNConfig
from elmo_train.use.elmo import ScalarMix
from elmo_train.use.tagger.crf import CRF

FEATURES = ("none", "token", "elmo")


@dataclass
class TaggerConfig:
    """Sizes of the tagger. The defaults are a CPU-sized version of the paper's NER model
    (word 50, char CNN 30 filters of width 3 as Peters et al. 2017, BiLSTM 2 x 100 per
    direction where the paper has 2 x 200), so an NCBI-disease epoch takes about a minute on
    two cores."""

    features: str = "elmo"  # none | token | elmo
    word_dim: int = 50
    min_word_count: int = 2  # rarer training words share the <UNK> embedding
    char_dim: int = 16
    char_filters: int = 30
    char_width: int = 3
    hidden: int = 100  # per direction
    n_layers: int = 2
    dropout: float = 0.5  # on the token representation, between LSTM layers, before the CRF
    feature_dropout: float = 0.5  # on the mixed biLM features, as Elmo's default

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise ValueError(
                f"features must be one of {', '.join(FEATURES)}, got {self.features!r}"
            )


@dataclass
class TaggerBatch:
    words: torch.Tensor  # (B, T) long: word ids, 0 on padding
    chars: torch.Tensor  # (B, T, 50) long: char ids, 0 on padding
    mask: torch.Tensor  # (B, T) bool: real tokens, a prefix of each row
    tags: torch.Tensor  # (B, T) long: gold tag ids (0 on padding and when unknown)
    features: torch.Tensor | None = None  # (B, L, T, D): the biLM's layers, zero on padding

    def to(self, device: torch.device | str) -> "TaggerBatch":
        moved = {k: v.to(device) if v is not None else None for k, v in vars(self).items()}
        return TaggerBatch(**moved)


class BiLSTM(nn.Module):
    """A stacked bidirectional LSTM over right-padded rows; layer l + 1 reads both directions
    of layer l. Each direction is its own `nn.LSTM` on the padded batch, the backward one on
    each row's tokens reversed in place: on CPU that runs oneDNN's fused kernel, where a packed
    sequence runs step by step and its backward zero-fills the whole input at every step
    (4.5x the CPU time, measured)."""

    def __init__(self, input_dim: int, hidden: int, n_layers: int, dropout: float):
        super().__init__()
        dims = [input_dim] + [2 * hidden] * (n_layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(d, hidden, batch_first=True) for d in dims)
        self.backward_layers = nn.ModuleList(nn.LSTM(d, hidden, batch_first=True) for d in dims)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, input_dim) and each row's length (B,) -> (B, T, 2 * hidden); padding
        positions hold values that no real position depends on."""
        for i, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers, strict=True)):
            if i > 0:
                x = self.dropout(x)  # between layers, as nn.LSTM's dropout
            h_fwd, _ = fwd(x)  # (B, T, H)
            h_bwd, _ = bwd(reverse_padded(x, lengths))  # (B, T, H), each row read backwards
            x = torch.cat([h_fwd, reverse_padded(h_bwd, lengths)], dim=-1)  # (B, T, 2H)
        return x


class Tagger(nn.Module):
    def __init__(
        self,
        config: TaggerConfig,
        n_words: int,
        n_tags: int,
        allowed_start: list[bool] | None = None,
        allowed: list[list[bool]] | None = None,
        n_layers: int = 0,
        feature_dim: int = 0,
    ):
        """`n_layers` biLM layers of `feature_dim` each (both 0 with features `none`)."""
        super().__init__()
        self.config = config
        self.words = nn.Embedding(n_words, config.word_dim, padding_idx=0)
        cnn = CharCNNConfig(
            embedding_dim=config.char_dim,
            filters=[[config.char_width, config.char_filters]],
            n_highway=0,
        )
        self.chars = CharEncoder(cnn, config.char_filters)
        self.mix = ScalarMix(n_layers) if config.features == "elmo" else None
        self.feature_dropout = nn.Dropout(config.feature_dropout)
        self.dropout = nn.Dropout(config.dropout)
        input_dim = config.word_dim + config.char_filters
        if config.features != "none":
            input_dim += feature_dim
        self.lstm = BiLSTM(input_dim, config.hidden, config.n_layers, config.dropout)
        self.emit = nn.Linear(2 * config.hidden, n_tags)
        self.crf = CRF(n_tags, allowed_start, allowed)

    def mixed_features(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The biLM's layers (B, L, T, D) -> the features the tagger reads (B, T, D)."""
        if self.mix is not None:
            mixed = self.mix(list(features.unbind(dim=1)), mask)  # (B, T, D)
        else:
            mixed = features[:, 0]  # (B, T, D): the token layer
        return self.feature_dropout(mixed)

    def emissions(self, batch: TaggerBatch) -> torch.Tensor:
        """Tag scores (B, T, K) of every token."""
        parts = [self.words(batch.words), self.chars(batch.chars)]  # (B, T, W), (B, T, C)
        if self.config.features != "none":
            parts.append(self.mixed_features(batch.features, batch.mask))  # (B, T, D)
        x = self.dropout(torch.cat(parts, dim=-1))  # (B, T, W + C [+ D])
        h = self.lstm(x, batch.mask.sum(dim=1))  # (B, T, 2H)
        return self.emit(self.dropout(h))  # (B, T, K)

    def forward(self, batch: TaggerBatch) -> torch.Tensor:
        """The CRF's negative log-likelihood of each sentence's gold tags, (B,)."""
        return self.crf(self.emissions(batch), batch.tags, batch.mask)

    @torch.no_grad()
    def decode(self, batch: TaggerBatch) -> list[list[int]]:
        return self.crf.viterbi(self.emissions(batch), batch.mask)
