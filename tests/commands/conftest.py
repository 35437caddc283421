"""What the command tests share: a tiny random model saved to disk."""

import pytest
import torch

from elmo_train.formats.model_dir import save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import preset


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A `tiny` LanguageModel with random weights as a model directory (one per test module)."""
    torch.manual_seed(0)
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", "the", "bank", "river", "he", "she", "."])
    return save_model_dir(
        LanguageModel(preset("tiny"), vocab_size=len(vocab)),
        vocab,
        tmp_path_factory.mktemp("model"),
    )
