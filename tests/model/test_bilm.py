import dataclasses

import pytest
import torch

from elmo_train.model.batch import Batch
from elmo_train.model.bilm import BiLM, LanguageModel, reverse_padded
from elmo_train.model.chars import batch_to_ids, with_boundaries
from elmo_train.model.config import preset


@pytest.fixture
def bilm() -> BiLM:
    config = preset("tiny")
    config.dropout = 0.0
    return BiLM(config).double().eval()


def test_activations_layout(bilm):
    out = bilm(batch_to_ids(with_boundaries([["a", "bank", "loan"], ["river"]])))
    P = bilm.config.lstm.projection_dim
    assert len(out.activations) == bilm.n_layers + 1
    assert all(a.shape == (2, 5, 2 * P) for a in out.activations)
    token = out.activations[0]
    torch.testing.assert_close(token[..., :P], token[..., P:])  # token layer duplicated
    assert out.mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    assert all(a[1, 3:].abs().sum() == 0 for a in out.activations)  # padding is zero


def test_no_peeking_across_directions(bilm):
    """Changing tokens after t never changes forward states at <= t; the mirror for backward."""
    words = "the bank of the river was steep and wet".split()
    t = 4  # position in the char-id tensor (index 0 is <S>)
    changed = words[: t - 1] + ["zz" + w for w in words[t - 1 :]]  # positions >= t differ
    P = bilm.config.lstm.projection_dim
    a = bilm(batch_to_ids(with_boundaries([words]))).activations
    b = bilm(batch_to_ids(with_boundaries([changed]))).activations
    for layer in range(1, len(a)):
        torch.testing.assert_close(a[layer][0, :t, :P], b[layer][0, :t, :P])  # forward
        assert not torch.allclose(a[layer][0, t:, :P], b[layer][0, t:, :P])
    early = ["my"] + words[1:]  # change the first word: backward states after it are unchanged
    c = bilm(batch_to_ids(with_boundaries([early]))).activations
    for layer in range(1, len(a)):
        torch.testing.assert_close(a[layer][0, 2:, P:], c[layer][0, 2:, P:])  # backward
        assert not torch.allclose(a[layer][0, :2, P:], c[layer][0, :2, P:])


def test_padding_does_not_change_a_sentence(bilm):
    alone = bilm(batch_to_ids(with_boundaries([["short", "one"]]))).activations[-1][0, :4]
    padded = bilm(
        batch_to_ids(with_boundaries([["short", "one"], ["a", "much", "longer", "second", "row"]]))
    )
    torch.testing.assert_close(padded.activations[-1][0, :4], alone)


def test_reverse_padded_keeps_padding_in_place():
    x = torch.arange(8).view(2, 4)
    assert reverse_padded(x, torch.tensor([4, 2])).tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]


def test_forward_only_model():
    config = preset("tiny")
    config.bidirectional = False
    bilm = BiLM(config).eval()
    out = bilm(batch_to_ids(with_boundaries([["a", "b"]])))
    assert out.activations[-1].shape[-1] == config.lstm.projection_dim


def test_kim_language_model_has_no_elmo_layers():
    lm = LanguageModel(preset("kim_small"), vocab_size=20).eval()
    batch = _batch()
    assert torch.isfinite(lm(batch).loss)  # the language model runs
    with pytest.raises(ValueError, match="projection=false"):
        lm.bilm(batch.fwd_chars)  # but the token layer is 525 wide, the LSTM's 300


def _batch(B=3, T=5, V=20):
    words = [[f"w{(i * 7 + t) % V}" for t in range(T)] for i in range(B)]
    chars = batch_to_ids(words)  # (B, T, 50)
    return Batch(
        fwd_chars=chars,
        fwd_targets=torch.randint(0, V, (B, T)),
        bwd_chars=chars.flip(1),
        bwd_targets=torch.randint(0, V, (B, T)),
        mask=torch.ones(B, T, dtype=torch.bool),
        reset=torch.zeros(B, dtype=torch.bool),
    )


def test_language_model_loss_is_mean_of_directions_and_masks_padding():
    torch.manual_seed(0)
    lm = LanguageModel(preset("tiny"), vocab_size=20).eval()
    batch = _batch()
    out = lm(batch)
    assert torch.isclose(out.loss, (out.nll[0] + out.nll[1]) / 2)
    assert out.n_targets == 15
    masked = dataclasses.replace(batch, mask=batch.mask.clone())
    masked.mask[:, 3:] = False
    changed = dataclasses.replace(masked, fwd_targets=batch.fwd_targets.clone())
    changed.fwd_targets[:, 3:] = 0  # targets under the mask do not matter
    assert torch.isclose(lm(masked).nll[0], lm(changed).nll[0])
    assert lm(masked).n_targets == 9


def test_language_model_trains_on_a_tiny_batch():
    torch.manual_seed(0)
    lm = LanguageModel(preset("tiny"), vocab_size=20)
    batch = _batch()
    optimizer = torch.optim.Adam(lm.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = lm(batch).loss
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


def test_language_model_runs_in_float64():
    lm = LanguageModel(preset("tiny"), vocab_size=20).double().eval()
    batch = _batch()
    assert lm(batch).loss.dtype == torch.float64


def test_kim_uniform_init_bounds_every_parameter_and_nets_the_forget_bias():
    config = preset("kim_small")
    assert config.init_uniform == 0.05
    lm = LanguageModel(config, vocab_size=50)
    cell = config.lstm.dim
    assert config.lstm.recurrent_bias  # Torch's i2h and h2h biases, each uniform
    for name, param in lm.named_parameters():
        if name.startswith("bilm.lstm.bias."):
            forget = param[:, 2 * cell : 3 * cell]
            net = forget + 1.0  # what the cell uses: bilm-tf's +1 is added at run time
            assert net.abs().max() <= 0.05 and net.std() > 0.01, name
            param = torch.cat([param[:, : 2 * cell], param[:, 3 * cell :]], dim=1)
        if name.endswith("gate.bias"):  # the highway transform gate starts near -2
            param = param + 2.0
        assert param.abs().max() <= 0.05, name
    assert torch.all(lm.bilm.char_encoder.embedding.weight[0] == 0)  # the padding token
