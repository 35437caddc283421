"""How saturated a character CNN is: tanh features stuck at +-1 pass almost no gradient."""

import torch

from elmo_train.model.char_encoder import CharEncoder
from elmo_train.model.chars import batch_to_ids


def saturation(encoder: CharEncoder, words: list[str]) -> dict[str, float]:
    char_ids = batch_to_ids([words])[0]  # (N, 50)
    with torch.no_grad():
        features = encoder.pool(char_ids)  # (N, n_filters), after the activation
        embeddings = torch.nn.functional.normalize(encoder.encode_types(char_ids), dim=-1)
    cosine = embeddings @ embeddings.t()  # (N, N)
    n = len(words)
    return {
        "words": n,
        "saturated": (features.abs() > 0.99).float().mean().item(),
        "mean_abs": features.abs().mean().item(),
        "mean_cosine": ((cosine.sum() - cosine.diagonal().sum()) / (n * n - n)).item(),
    }
