"""The tagger network: its `elmo` features are our Elmo's output, its BiLSTM respects padding
and direction."""

import torch

from elmo_train.model.bilm import BiLM
from elmo_train.model.chars import batch_to_ids
from elmo_train.model.config import BiLMConfig, CharCNNConfig, LSTMConfig
from elmo_train.use.elmo import Elmo
from elmo_train.use.embedder import Embedder
from elmo_train.use.tagger.network import BiLSTM, Tagger, TaggerConfig

SENTENCES = [["the", "bank", "of", "the", "river"], ["a", "bank"], ["rates", "rose", "again"]]


def tiny_bilm() -> BiLM:
    config = BiLMConfig(
        char_cnn=CharCNNConfig(embedding_dim=4, filters=[[1, 4], [2, 8]], n_highway=1),
        lstm=LSTMConfig(dim=16, projection_dim=8, n_layers=2),
    )
    return BiLM(config).eval()


def padded_layers(bilm: BiLM) -> tuple[torch.Tensor, torch.Tensor]:
    """The Embedder's layers of SENTENCES as the tagger's batch holds them: (B, L, T, D)."""
    layers = list(Embedder(bilm).embed(SENTENCES))
    features = torch.zeros(3, 3, 5, 16)
    for row, sentence_layers in enumerate(layers):
        features[row, :, : sentence_layers.shape[1]] = sentence_layers
    mask = torch.tensor([[True] * 5, [True] * 2 + [False] * 3, [True] * 3 + [False] * 2])
    return features, mask


def test_elmo_features_are_elmos_scalar_mix_of_the_same_biLM():
    bilm = tiny_bilm()
    tagger = Tagger(TaggerConfig(features="elmo"), 10, 3, n_layers=3, feature_dim=16).eval()
    s = [0.3, -1.0, 2.0]
    with torch.no_grad():
        tagger.mix.scalar_parameters.copy_(torch.tensor(s))
        tagger.mix.gamma.fill_(1.7)
    features, mask = padded_layers(bilm)
    ours = tagger.mixed_features(features, mask)  # (B, T, D)
    elmo = Elmo(None, None, 1, module=bilm, scalar_mix_parameters=s).eval()
    with torch.no_grad():
        elmo.scalar_mixes[0].gamma.fill_(1.7)
    expected = elmo(batch_to_ids(SENTENCES))["elmo_representations"][0]
    torch.testing.assert_close(ours * mask.unsqueeze(-1), expected, rtol=1e-5, atol=1e-5)


def test_token_features_are_the_token_layer():
    tagger = Tagger(TaggerConfig(features="token"), 10, 3, n_layers=3, feature_dim=16).eval()
    assert tagger.mix is None
    features, mask = padded_layers(tiny_bilm())
    torch.testing.assert_close(tagger.mixed_features(features, mask), features[:, 0])


def test_bilstm_ignores_padding_and_keeps_directions_apart():
    torch.manual_seed(0)
    lstm = BiLSTM(6, 5, n_layers=2, dropout=0.0).double()
    x = torch.randn(2, 7, 6, dtype=torch.float64)
    lengths = torch.tensor([7, 4])
    out = lstm(x, lengths)  # (2, 7, 10)
    # Row 1 alone, without its padding, gives the same vectors: padding changes nothing.
    alone = lstm(x[1:, :4], lengths[1:])
    torch.testing.assert_close(out[1, :4], alone[0], rtol=1e-12, atol=1e-12)
    noisy = x.clone()
    noisy[1, 4:] = 100.0
    torch.testing.assert_close(lstm(noisy, lengths)[1, :4], out[1, :4], rtol=1e-12, atol=1e-12)
    # One layer, token 3 changed: the forward half before it and the backward half after it
    # are unchanged (from the second layer on each direction reads both, as nn.LSTM's).
    lstm = BiLSTM(6, 5, n_layers=1, dropout=0.0).double()
    out = lstm(x, lengths)
    changed = x.clone()
    changed[0, 3] += 1.0
    new = lstm(changed, lengths)
    torch.testing.assert_close(new[0, :3, :5], out[0, :3, :5], rtol=0, atol=0)
    torch.testing.assert_close(new[0, 4:, 5:], out[0, 4:, 5:], rtol=0, atol=0)
    assert not torch.allclose(new[0, :3, 5:], out[0, :3, 5:])
    assert not torch.allclose(new[0, 4:, :5], out[0, 4:, :5])
