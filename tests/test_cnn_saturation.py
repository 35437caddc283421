"""scripts/cnn_saturation.py measures what it says: tanh CNN features stuck at +-1."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import cnn_saturation  # noqa: E402

from elmo_train.model.bilm import LanguageModel  # noqa: E402
from elmo_train.model.config import preset  # noqa: E402

WORDS = ["the", "bank", "river", "loan", "unbelievable", "a", "N", "<unk>"]


def test_kim_init_is_unsaturated_and_huge_weights_saturate():
    encoder = LanguageModel(preset("kim_small"), vocab_size=20).bilm.char_encoder.eval()
    fresh = cnn_saturation.saturation(encoder, WORDS)
    assert fresh["saturated"] == 0.0 and fresh["mean_abs"] < 0.05
    with torch.no_grad():
        for conv in encoder.convs:  # the bias too: with Kim's zero padding character an
            conv.weight.mul_(1e4)  # all-padding window is the bias alone
            conv.bias.mul_(1e4)
    saturated = cnn_saturation.saturation(encoder, WORDS)
    assert saturated["saturated"] > 0.9 and saturated["mean_abs"] > 0.99
