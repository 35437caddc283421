"""The Elmo module and ScalarMix: the mixing math, layer norms, boundaries, masks, grads, dropout."""

import math

import pytest
import torch

from elmo_train.model.bilm import BiLM
from elmo_train.model.chars import batch_to_ids, with_boundaries
from elmo_train.model.config import BiLMConfig, CharCNNConfig, LSTMConfig
from elmo_train.use.elmo import Elmo, ScalarMix
from elmo_train.use.embedder import Embedder

SENTENCES = [["the", "bank", "of", "the", "river"], ["a", "bank"], ["rates", "rose", "again"]]


def tiny_bilm() -> BiLM:
    config = BiLMConfig(
        char_cnn=CharCNNConfig(embedding_dim=4, filters=[[1, 4], [2, 8]], n_highway=1),
        lstm=LSTMConfig(dim=16, projection_dim=8, n_layers=2, cell_clip=3.0, proj_clip=3.0),
        dropout=0.3,
    )
    return BiLM(config)


def test_scalar_mix_is_gamma_times_softmax_weighted_sum():
    layers = [torch.randn(2, 3, 4) for _ in range(3)]
    s = [0.1, -0.5, 2.0]
    mix = ScalarMix(3, initial_scalar_parameters=s)
    with torch.no_grad():
        mix.gamma.fill_(1.7)
    z = sum(math.exp(v) for v in s)
    expected = 1.7 * sum(math.exp(v) / z * h for v, h in zip(s, layers, strict=True))
    torch.testing.assert_close(mix(layers), expected, rtol=1e-6, atol=1e-6)


def test_token_layer_norm_normalises_each_position_and_keeps_padding_zero():
    layers = [torch.randn(2, 4, 6) * 5 + 3 for _ in range(2)]
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    mix = ScalarMix(2, layer_norm="token", initial_scalar_parameters=[0.0, -1e4], trainable=False)
    out = mix(layers, mask)  # selects layer 0, normalised
    x = layers[0]
    expected = (x - x.mean(-1, keepdim=True)) / torch.sqrt(
        x.var(-1, unbiased=False, keepdim=True) + 1e-5
    )
    torch.testing.assert_close(out[mask], expected[mask], rtol=1e-5, atol=1e-5)
    assert out[~mask].abs().max() == 0


def test_allennlp_layer_norm_uses_one_mean_and_std_over_unmasked_elements():
    x = torch.randn(2, 4, 6) * 5 + 3
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    mix = ScalarMix(1, layer_norm="allennlp")
    real = x[mask]  # (5, 6): statistics over these 30 numbers only
    expected = (x - real.mean()) / torch.sqrt(real.var(unbiased=False) + 1e-13)
    torch.testing.assert_close(mix([x], mask), expected, rtol=1e-5, atol=1e-5)
    # Padding values change nothing at real positions; a real value changes every position.
    changed = x.clone()
    changed[0, 3] += 100.0
    torch.testing.assert_close(mix([changed], mask)[mask], mix([x], mask)[mask])
    changed[0, 0, 0] += 100.0
    assert not torch.allclose(mix([changed], mask)[1, 0], mix([x], mask)[1, 0])


def test_batch_to_ids_has_no_boundaries():
    ids = batch_to_ids(SENTENCES)
    assert ids.shape == (3, 5, 50)
    torch.testing.assert_close(ids[0], batch_to_ids(with_boundaries(SENTENCES))[0, 1:-1])
    assert ids[1, 2:].abs().sum() == 0  # padding tokens are all zero


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_selected_layer_equals_the_embedders_layer(layer):
    bilm = tiny_bilm()
    selector = [-9e10] * 3
    selector[layer] = 1.0
    elmo = Elmo(bilm, 1, dropout=0.5, scalar_mix_parameters=selector).eval()
    out = elmo(batch_to_ids(SENTENCES))
    expected = list(Embedder(bilm).embed(SENTENCES))
    for row, sentence in enumerate(SENTENCES):
        got = out["elmo_representations"][0][row, : len(sentence)]
        torch.testing.assert_close(got, expected[row][layer], rtol=1e-5, atol=1e-5)
        assert out["elmo_representations"][0][row, len(sentence) :].abs().sum() == 0


def test_shapes_mask_and_boundaries():
    bilm = tiny_bilm()
    ids = batch_to_ids(SENTENCES)  # (3, 5, 50)
    out = Elmo(bilm, 2).eval()(ids)
    assert len(out["elmo_representations"]) == 2
    assert out["elmo_representations"][1].shape == (3, 5, 16)
    assert out["mask"].tolist() == [[True] * 5, [True] * 2 + [False] * 3, [True] * 3 + [False] * 2]

    kept = Elmo(bilm, 1, keep_sentence_boundaries=True).eval()(ids)
    assert kept["elmo_representations"][0].shape == (3, 7, 16)
    assert kept["mask"].sum(dim=1).tolist() == [7, 4, 5]  # each sentence + <S> + </S>
    # Without boundaries the output is the kept output's inner positions.
    inner = kept["elmo_representations"][0][:, 1:-1] * out["mask"].unsqueeze(-1)
    torch.testing.assert_close(inner, Elmo(bilm, 1).eval()(ids)["elmo_representations"][0])


def test_stateless_and_leading_dims():
    elmo = Elmo(tiny_bilm(), 1).eval()
    alone = elmo(batch_to_ids(SENTENCES[1:2]))["elmo_representations"][0][0]
    batched = elmo(batch_to_ids(SENTENCES))["elmo_representations"][0][1, :2]
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)
    ids = batch_to_ids(SENTENCES + SENTENCES[::-1]).view(2, 3, 5, 50)
    out = elmo(ids)
    assert out["elmo_representations"][0].shape == (2, 3, 5, 16)
    assert out["mask"].shape == (2, 3, 5)
    torch.testing.assert_close(
        out["elmo_representations"][0][1, 2, :5], elmo(ids[0])["elmo_representations"][0][0]
    )


@pytest.mark.parametrize("requires_grad", [False, True])
def test_frozen_or_trainable_bilm(requires_grad):
    elmo = Elmo(tiny_bilm(), 2, requires_grad=requires_grad, dropout=0.0)
    out = elmo(batch_to_ids(SENTENCES))
    sum(r.sum() for r in out["elmo_representations"]).backward()
    bilm_grads = [p.grad for p in elmo.bilm.parameters()]
    if requires_grad:
        assert all(g is not None for g in bilm_grads)
        assert any(g.abs().sum() > 0 for g in bilm_grads)
    else:
        assert all(g is None for g in bilm_grads)
    for mix in elmo.scalar_mixes:  # the mixes always learn unless fixed
        assert mix.scalar_parameters.grad.abs().sum() > 0
        assert mix.gamma.grad.abs().sum() > 0


def test_fixed_scalar_mix_parameters_are_frozen():
    elmo = Elmo(tiny_bilm(), 1, scalar_mix_parameters=[0.0, 1.0, 2.0])
    assert not any(p.requires_grad for p in elmo.parameters())


def test_dropout_only_in_training_and_never_inside_the_bilm():
    elmo = Elmo(tiny_bilm(), 1, dropout=0.5)
    ids = batch_to_ids(SENTENCES)
    elmo.eval()
    first = elmo(ids)["elmo_representations"][0]
    torch.testing.assert_close(elmo(ids)["elmo_representations"][0], first)
    elmo.train()
    assert elmo.training and not elmo.bilm.training
    dropped = elmo(ids)["elmo_representations"][0]
    real = elmo(ids)["mask"]
    zeroed = (dropped[real] == 0) & (first[real] != 0)
    assert 0.3 < zeroed.float().mean() < 0.7
    kept = dropped[real] != 0
    torch.testing.assert_close(dropped[real][kept], 2.0 * first[real][kept])  # inverted dropout
