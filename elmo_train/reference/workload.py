"""Synthetic training batches and FLOP counts: the workload `scripts/benchmark.py` times."""

import string

import numpy as np
import torch

from elmo_train.model.batch import Batch
from elmo_train.model.chars import word_to_char_ids
from elmo_train.model.config import BiLMConfig


def synthetic_types(n_types: int, rng: np.random.Generator) -> torch.Tensor:
    """Char ids `(n_types, 50)` of distinct random lowercase words of 2..11 letters."""
    letters = np.array(list(string.ascii_lowercase))
    words: dict[str, None] = {}
    while len(words) < n_types:
        length = int(rng.integers(2, 12))
        words.setdefault("".join(rng.choice(letters, length)), None)
    return torch.tensor([word_to_char_ids(w) for w in words], dtype=torch.long)


def make_batch(
    type_chars: torch.Tensor, batch_size: int, steps: int, zipf: float, rng: np.random.Generator
) -> Batch:
    """A stream-mode batch whose backward stream reads the forward tokens right to left."""
    n_types = type_chars.shape[0]
    cdf = np.cumsum(1.0 / np.arange(1, n_types + 1) ** zipf)
    ids = np.searchsorted(cdf / cdf[-1], rng.random((batch_size, steps + 2)))  # (B, T+2)
    ids = torch.from_numpy(np.minimum(ids, n_types - 1))
    fwd_chars = type_chars[ids[:, 1 : steps + 1]]  # (B, T, 50)
    return Batch(
        fwd_chars=fwd_chars,
        fwd_targets=ids[:, 2:],  # next token
        bwd_chars=fwd_chars.flip(1),
        bwd_targets=ids[:, :steps].flip(1),  # previous token, in backward order
        mask=torch.ones(batch_size, steps, dtype=torch.bool),
        reset=torch.zeros(batch_size, dtype=torch.bool),
    )


def macs_per_token(config: BiLMConfig, n_negatives: int | None) -> dict[str, int]:
    """Forward multiply-accumulates per token position, by part (both directions)."""
    cnn, lstm = config.char_cnn, config.lstm
    L, e, F = cnn.max_characters_per_token, cnn.embedding_dim, cnn.n_filters
    C, P = lstm.dim, lstm.projection_dim
    D = 2 if config.bidirectional else 1
    macs = {
        "char_cnn": sum((L - w + 1) * w * e * n for w, n in cnn.filters),
        "highway": cnn.n_highway * 2 * F * F,
        "projection": F * P if F != P else 0,
        "lstm": D * lstm.n_layers * (P * 4 * C + P * 4 * C + (C * P if P < C else 0)),
    }
    if n_negatives is not None:
        macs["softmax"] = D * (n_negatives + 1) * P
    return macs
