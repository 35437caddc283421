"""Synthetic training batches and FLOP counts: the workload `scripts/benchmark.py` times."""

from pathlib import Path

import numpy as np
import torch

from elmo_train.model.batch import Batch
from elmo_train.model.chars import word_to_char_ids
from elmo_train.model.config import BiLMConfig


def synthetic_words(n_types: int, rng: np.random.Generator) -> list[str]:
    """Distinct random lowercase words of 2..11 letters (lengths uniform)."""
    words: dict[str, None] = {}
    while len(words) < n_types:
        n = n_types - len(words)
        lengths = rng.integers(2, 12, n)
        letters = rng.integers(ord("a"), ord("z") + 1, (n, 11), dtype=np.uint8)
        for row, length in zip(letters, lengths, strict=True):
            words.setdefault(row[:length].tobytes().decode(), None)
    return list(words)


def synthetic_types(n_types: int, rng: np.random.Generator) -> torch.Tensor:
    """Char ids `(n_types, 50)` of `synthetic_words`."""
    words = synthetic_words(n_types, rng)
    return torch.tensor([word_to_char_ids(w) for w in words], dtype=torch.long)


def zipf_ids(n_types: int, shape, zipf: float, rng: np.random.Generator) -> np.ndarray:
    """Ids in [0, n_types) drawn with P(k) proportional to 1 / (k + 1)^zipf."""
    cdf = np.cumsum(1.0 / np.arange(1, n_types + 1) ** zipf)
    return np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(shape)), n_types - 1)


def make_batch(
    type_chars: torch.Tensor, batch_size: int, steps: int, zipf: float, rng: np.random.Generator
) -> Batch:
    """A stream-mode batch whose backward stream reads the forward tokens right to left."""
    ids = torch.from_numpy(zipf_ids(type_chars.shape[0], (batch_size, steps + 2), zipf, rng))
    fwd_chars = type_chars[ids[:, 1 : steps + 1]]  # (B, T, 50)
    return Batch(
        fwd_chars=fwd_chars,
        fwd_targets=ids[:, 2:],  # next token
        bwd_chars=fwd_chars.flip(1),
        bwd_targets=ids[:, :steps].flip(1),  # previous token, in backward order
        mask=torch.ones(batch_size, steps, dtype=torch.bool),
        reset=torch.zeros(batch_size, dtype=torch.bool),
    )


def write_synthetic_corpus(
    directory: Path, vocab_size: int, n_tokens: int, rng: np.random.Generator, zipf: float = 1.0
) -> None:
    """`vocab.txt` (bilm-tf's format: `<S>`, `</S>`, `<UNK>`, then words by frequency rank) and
    `train.txt`, `valid.txt` of 5..30-word sentences drawn Zipf(`zipf`) over those words: a
    stand-in for the 1B Word Benchmark's vocabulary (793,471) that a test machine can make."""
    words = np.array(synthetic_words(vocab_size - 3, rng))
    (directory / "vocab.txt").write_text("\n".join(["<S>", "</S>", "<UNK>", *words]) + "\n")
    for name, size in (("train.txt", n_tokens), ("valid.txt", max(n_tokens // 50, 1000))):
        tokens = words[zipf_ids(len(words), size, zipf, rng)]
        ends = np.cumsum(rng.integers(5, 31, size))
        ends = ends[ends < size]
        lines = (" ".join(sentence) for sentence in np.split(tokens, ends))
        (directory / name).write_text("\n".join(lines) + "\n")


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


# Dense peak TFLOP/s (no sparsity) of the GPUs the project measures on; the H200 has the H100
# SXM's compute. "fp32" is IEEE float32 (TF32 off).
PEAK_TFLOPS = {"H100": {"fp32": 67.0, "bf16": 989.0}, "H200": {"fp32": 67.0, "bf16": 989.0}}


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The peak of a GPU named like torch.cuda.get_device_name() reports it; None if unknown."""
    for gpu, peaks in PEAK_TFLOPS.items():
        if gpu in device_name:
            return peaks[precision]
    return None
