import pytest

from elmo_train.model.bilm import BiLM
from elmo_train.model.config import BiLMConfig, CharCNNConfig, LSTMConfig, preset


@pytest.mark.parametrize(
    ("name", "expected"),
    [("elmo_small", 13_593_296), ("elmo_medium", 28_027_728), ("elmo_original", 93_600_848)],
)
def test_elmo_presets_have_the_released_parameter_counts(name, expected):
    bilm = BiLM(preset(name))
    # Our character table has one more row than bilm-tf's: the frozen all-zero padding row.
    padding_row = bilm.char_encoder.embedding.weight.shape[1]
    assert sum(p.numel() for p in bilm.parameters()) - padding_row == expected


def test_kim_presets_follow_table_2():
    small, large = preset("kim_small"), preset("kim_large")
    assert small.char_cnn.n_filters == 525 and large.char_cnn.n_filters == 1100
    assert (small.lstm.dim, large.lstm.dim) == (300, 650)
    assert not small.bidirectional and small.char_cnn.activation == "tanh"
    # Kim's zeroed padding character: with the learned one kim_ptb_small stalls ~10 points
    # above Kim's curve by epoch 9 (docs/RESULTS.md, session 8).
    assert small.char_cnn.zero_padding_char and large.char_cnn.zero_padding_char


def test_kim_small_has_kims_architecture_and_parameter_count():
    """The highway output feeds the LSTM directly (no bilm-tf CNN_proj), as Kim et al."""
    bilm = BiLM(preset("kim_small"))
    assert bilm.char_encoder.projection is None and not bilm.has_elmo_layers
    assert bilm.lstm.weight_x[0].shape == (1, 525, 4 * 300)
    cnn = 262 * 15 + sum(15 * w * 25 * w + 25 * w for w in range(1, 7))
    highway = 2 * (525 * 525 + 525)
    lstm = (525 + 300) * 1200 + 2 * 1200 + (300 + 300) * 1200 + 2 * 1200  # Torch's 2 biases
    assert sum(p.numel() for p in bilm.parameters()) == cnn + highway + lstm


def test_invalid_configs_name_the_key():
    with pytest.raises(ValueError, match="model.lstm.impl=fused cannot clip"):
        BiLMConfig(lstm=LSTMConfig(impl="fused"))
    with pytest.raises(ValueError, match="projection_dim"):
        BiLMConfig(lstm=LSTMConfig(dim=8, projection_dim=16))
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("elmo_huge")
    # The data pipeline always encodes 50 columns: another width would train on ids the
    # exported options.json does not describe.
    with pytest.raises(ValueError, match="max_characters_per_token must be 50 .* got 30"):
        BiLMConfig(char_cnn=CharCNNConfig(max_characters_per_token=30))
