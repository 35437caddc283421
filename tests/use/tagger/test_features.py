"""The biLM feature cache: the Embedder's vectors, computed once, keyed by model and text."""

import numpy as np
import pytest
import torch

from elmo_train.formats.model_dir import save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import preset
from elmo_train.use.embedder import Embedder
from elmo_train.use.tagger.features import BiLMFeatures, BiLMSource

SENTENCES = [["Acute", "renal", "failure", "."], ["It"], ["the", "BRCA1", "gene", "is", "here"]]


def model_dir(directory, seed, config_yaml=""):
    torch.manual_seed(seed)
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", "the"])
    lm = LanguageModel(preset("tiny"), len(vocab))
    return save_model_dir(lm, vocab, directory, config_yaml=config_yaml)


@pytest.fixture
def model(tmp_path):
    return model_dir(tmp_path / "model", seed=0)


def features(model, cache):
    return BiLMFeatures(BiLMSource.from_model_dir(model), cache, batch_size=2)


def test_features_are_the_embedders_layers_and_are_cached(model, tmp_path):
    split, report = features(model, tmp_path / "cache").of(SENTENCES)
    assert report.computed and report.n_sentences == 3 and report.n_tokens == 10
    expected = list(Embedder.from_model_dir(model).embed(SENTENCES))
    assert (split.n_layers, split.dim) == (3, 64)
    for i, layers in enumerate(expected):
        torch.testing.assert_close(split.sentence(i), layers, rtol=0, atol=0)
    # A second run (a new process would do the same) reads the file instead of the biLM.
    again = features(model, tmp_path / "cache")
    split2, report2 = again.of(SENTENCES)
    assert not report2.computed and report2.path == report.path
    assert again._embedder is None  # the biLM was never loaded
    np.testing.assert_array_equal(split2.array, split.array)
    assert "read from the cache" in report2.line("train") and "3 sentences" in report2.line("x")


def test_the_key_is_the_model_and_the_text(model, tmp_path):
    cache = tmp_path / "cache"
    path = features(model, cache).path(SENTENCES)
    assert features(model, cache).path(SENTENCES[:2]) != path
    assert features(model, cache).path([["acute"], *SENTENCES[1:]]) != path
    other = model_dir(tmp_path / "other", seed=1)
    assert features(other, cache).path(SENTENCES) != path


def test_a_truncated_cache_file_is_recomputed(model, tmp_path):
    source = features(model, tmp_path / "cache")
    _, report = source.of(SENTENCES)
    np.save(report.path, np.zeros((3, 3, 64), dtype=np.float32))  # too few tokens
    split, again = source.of(SENTENCES)
    assert again.computed and split.array.shape == (10, 3, 64)


def test_a_model_trained_on_normalised_text_gets_normalised_tokens(tmp_path):
    """data.normalize in the model's config.yaml: features (and their key) follow it."""
    plain = model_dir(tmp_path / "plain", seed=0)
    nfc = model_dir(tmp_path / "nfc", seed=0, config_yaml="data:\n  normalize: NFC\n")
    source = BiLMSource.from_model_dir(nfc)
    assert source.normalize == "NFC" and BiLMSource.from_model_dir(plain).normalize is None
    composed, decomposed = [["caf\u00e9"]], [["cafe\u0301"]]
    cache = tmp_path / "cache"
    assert features(nfc, cache).path(composed) != features(plain, cache).path(composed)
    a, _ = features(nfc, cache).of(composed)
    b, _ = features(nfc, cache).of(decomposed)
    torch.testing.assert_close(a.sentence(0), b.sentence(0), rtol=0, atol=0)
    c, _ = features(plain, cache).of(decomposed)
    assert not torch.equal(c.sentence(0), b.sentence(0))
