import pytest
import torch

from elmo_train.model.char_encoder import CharEncoder
from elmo_train.model.chars import PADDING_CHAR, batch_to_ids
from elmo_train.model.config import CharCNNConfig


def _encoder(zero_padding_char: bool = False) -> CharEncoder:
    config = CharCNNConfig(
        embedding_dim=4,
        filters=[[1, 4], [2, 6], [3, 8]],
        n_highway=2,
        zero_padding_char=zero_padding_char,
    )
    return CharEncoder(config, output_dim=5).double()


def _assert_same_values_and_gradients(encoder: CharEncoder, a: torch.Tensor, b: torch.Tensor):
    torch.testing.assert_close(a, b)
    weights = torch.randn_like(a)
    grads_a = torch.autograd.grad((a * weights).sum(), list(encoder.parameters()))
    grads_b = torch.autograd.grad((b * weights).sum(), list(encoder.parameters()))
    for grad_a, grad_b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(grad_a, grad_b)


def test_dedup_matches_per_token_encoding_values_and_gradients():
    encoder = _encoder()
    chars = batch_to_ids([["the", "cat", "the", "the"], ["a", "cat"]])  # repeated types + padding
    deduped = encoder(chars)
    per_token = encoder.encode_types(chars.view(-1, 50)).view(*chars.shape[:-1], -1)
    _assert_same_values_and_gradients(encoder, deduped, per_token)


@pytest.mark.parametrize("zero_padding_char", [False, True])
def test_columns_cut_past_each_word_match_all_50_columns_values_and_gradients(zero_padding_char):
    # Short words, a 48-char token (its group keeps all 50 columns) and the padding token: the
    # two length groups and the cut must give exactly what pooling over all columns gives.
    encoder = _encoder(zero_padding_char)
    words = [["a", "bank", "x" * 48, "river"], ["of", "the", "unbelievable"]]
    types = batch_to_ids(words).view(-1, 50)  # (8, 50) with one all-zero padding row
    full_columns = encoder.transform(encoder.pool(types))
    _assert_same_values_and_gradients(encoder, encoder.encode_types(types), full_columns)


def test_fixed_shape_path_matches_dedup_path_values_and_gradients():
    encoder = _encoder()
    chars = batch_to_ids([["the", "cat", "the", "x" * 30], ["a", "cat"]])  # repeats + padding
    assert encoder.fixed_shapes is None  # on a CPU: dedup and column cut
    deduped = encoder(chars)
    encoder.fixed_shapes = True  # every position, all 50 columns
    _assert_same_values_and_gradients(encoder, encoder(chars), deduped)


def test_fixed_shape_path_needs_no_host_sync():
    # Meta tensors hold no data: torch.unique, .item() or a shape read from the data would
    # raise. Off the CPU the fixed-shape path is the default.
    encoder = _encoder().to("meta")
    chars = torch.zeros(2, 3, 7, 50, dtype=torch.long, device="meta")
    assert encoder(chars).shape == (2, 3, 7, 5)
    encoder.fixed_shapes = False
    with pytest.raises((NotImplementedError, RuntimeError)):
        encoder(chars)  # the dedup path reads the data


def test_highway_gate_starts_near_identity_and_padding_row_stays_zero():
    encoder = _encoder()
    assert torch.all(encoder.highways[0].gate.bias == -2.0)
    assert torch.all(encoder.embedding.weight[0] == 0)
    encoder(batch_to_ids([["x", "yy"], ["z"]])).sum().backward()
    assert torch.all(encoder.embedding.weight.grad[0] == 0)


@pytest.mark.parametrize("zero_padding_char", [False, True])
def test_padding_char_is_learned_or_held_at_zero(zero_padding_char):
    encoder = _encoder(zero_padding_char)
    chars = batch_to_ids([["a", "bank"], ["river"]])
    starts_at_zero = bool(torch.all(encoder.embedding.weight[PADDING_CHAR] == 0))
    assert starts_at_zero == zero_padding_char
    encoder(chars).sum().backward()
    # Both get a gradient: Kim's lookup table gives the zeroed row one too, and his clipping
    # norm counts it.
    assert encoder.embedding.weight.grad[PADDING_CHAR].abs().sum() > 0
    with torch.no_grad():
        updated = encoder.embedding.weight[PADDING_CHAR] + 1.0
        encoder.embedding.weight[PADDING_CHAR] = updated  # an optimizer step
    encoder.zero_padding_char_()
    if zero_padding_char:  # Kim et al.: a zero vector again after every step
        assert torch.all(encoder.embedding.weight[PADDING_CHAR] == 0)
    else:  # bilm-tf: a character like any other
        assert torch.equal(encoder.embedding.weight[PADDING_CHAR], updated)


def test_highway_is_bilm_tf_carry_semantics():
    encoder = _encoder()
    hw = encoder.highways[0]
    x = torch.randn(3, hw.dim, dtype=torch.double)
    t = torch.sigmoid(x @ hw.gate.weight.t() + hw.gate.bias)
    expected = t * torch.relu(x @ hw.transform.weight.t() + hw.transform.bias) + (1 - t) * x
    torch.testing.assert_close(hw(x), expected)


def test_empty_batch_gives_empty_embeddings():
    encoder = _encoder()
    assert encoder(torch.zeros(2, 0, 50, dtype=torch.long)).shape == (2, 0, 5)
