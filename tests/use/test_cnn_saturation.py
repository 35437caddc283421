"""`saturation` measures what it says: tanh CNN features stuck at +-1."""

import torch

from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import preset
from elmo_train.use.cnn_saturation import saturation

WORDS = ["the", "bank", "river", "loan", "unbelievable", "a", "N", "<unk>"]


def test_kim_init_is_unsaturated_and_huge_weights_saturate():
    encoder = LanguageModel(preset("kim_small"), vocab_size=20).bilm.char_encoder.eval()
    fresh = saturation(encoder, WORDS)
    assert fresh["saturated"] == 0.0 and fresh["mean_abs"] < 0.05
    with torch.no_grad():
        for conv in encoder.convs:  # the bias too: with Kim's zero padding character an
            conv.weight.mul_(1e4)  # all-padding window is the bias alone
            conv.bias.mul_(1e4)
    saturated = saturation(encoder, WORDS)
    assert saturated["saturated"] > 0.9 and saturated["mean_abs"] > 0.99
