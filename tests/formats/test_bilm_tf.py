"""bilm-tf weight format: parity with the original implementation's fixture, round trips, errors."""

import json

import h5py
import numpy as np
import pytest
import torch

from elmo_train.cli import main
from elmo_train.errors import UserError
from elmo_train.formats.bilm_tf import config_from_options, load_bilm, read_options, write_options
from elmo_train.formats.model_dir import load_model_dir, save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.batch import Batch
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.chars import batch_to_ids, with_boundaries
from elmo_train.model.config import preset


def fixture_batches(model_dir):
    """bilm-tf's test: batch i = the i-th sentence of each of the 3 lists, state carried."""
    lists = json.loads((model_dir / "lm_embeddings_sentences.json").read_text())
    return [[lists[k][i].split() for k in range(3)] for i in range(10)]


def expected_top_layer(model_dir, k: int, i: int) -> torch.Tensor:
    with h5py.File(model_dir / f"lm_embeddings_{k}.hdf5", "r") as f:
        fwd, bwd = np.asarray(f[str(i)])  # (n, 16) each
    return torch.from_numpy(np.concatenate([fwd, bwd], axis=-1))  # (n, 32)


@pytest.mark.parametrize("impl", ["clipped", pytest.param("compiled", marks=pytest.mark.slow)])
def test_reproduces_bilm_tf_fixture_embeddings(fixtures_dir, impl):
    # Every optimisation on (per-type char CNN with cut columns, batched directions, and for
    # `compiled` the torch.compile'd cell): the clipping semantics must stay bilm-tf's.
    model_dir = fixtures_dir / "model"
    bilm = load_bilm(model_dir / "options.json", model_dir / "lm_weights.hdf5")
    bilm.lstm.config.impl = impl
    state, worst = None, 0.0
    with torch.no_grad():
        for i, batch in enumerate(fixture_batches(model_dir)):
            out = bilm(batch_to_ids(with_boundaries(batch)), state)
            state = out.state
            for k, sentence in enumerate(batch):
                got = out.activations[-1][k, 1 : len(sentence) + 1]
                worst = max(worst, (got - expected_top_layer(model_dir, k, i)).abs().max().item())
    assert worst <= 1e-5


def test_embed_command_stateful_reproduces_fixture(fixtures_dir, tmp_path):
    model_dir = fixtures_dir / "model"
    batches = fixture_batches(model_dir)
    lines = [" ".join(sentence) for batch in batches for sentence in batch]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.hdf5"
    main([
        "embed", "--options", str(model_dir / "options.json"),
        "--weights", str(model_dir / "lm_weights.hdf5"), "--input", str(tmp_path / "in.txt"),
        "--output", str(out), "--stateful", "--batch-size", "3",
    ])  # fmt: skip
    with h5py.File(out, "r") as f:
        assert len(f) == 30
        for line in range(30):
            i, k = divmod(line, 3)
            layers = np.asarray(f[str(line)])  # (3, n, 32)
            assert layers.shape == (3, len(batches[i][k]), 32)
            np.testing.assert_allclose(layers[-1], expected_top_layer(model_dir, k, i), atol=1e-5)


def test_embed_is_stateless_and_deterministic_by_default(fixtures_dir, tmp_path):
    model_dir = fixtures_dir / "model"
    (tmp_path / "in.txt").write_text("the bank of the river\nthe bank raised rates\n")
    args = [
        "embed",
        "--options",
        str(model_dir / "options.json"),
        "--weights",
        str(model_dir / "lm_weights.hdf5"),
        "--input",
        str(tmp_path / "in.txt"),
    ]
    main([*args, "--output", str(tmp_path / "a.hdf5"), "--batch-size", "1"])
    main([*args, "--output", str(tmp_path / "b.hdf5"), "--batch-size", "2"])
    with h5py.File(tmp_path / "a.hdf5") as a, h5py.File(tmp_path / "b.hdf5") as b:
        for key in ("0", "1"):
            np.testing.assert_allclose(a[key], b[key], atol=1e-6)


def test_model_dir_round_trip_identical_parameters_and_outputs(tmp_path):
    torch.manual_seed(0)
    config = preset("tiny")
    config.softmax.kind = "sampled"
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", "bank", "river", "loan"])
    lm = LanguageModel(config, len(vocab)).eval()
    save_model_dir(lm, vocab, tmp_path / "model")
    loaded, loaded_vocab = load_model_dir(tmp_path / "model")
    assert loaded_vocab.words == vocab.words
    assert loaded.config.softmax.kind == "sampled"
    original, reloaded = lm.state_dict(), loaded.state_dict()
    assert original.keys() == reloaded.keys()
    for name in original:
        assert torch.equal(original[name], reloaded[name]), name
    chars = batch_to_ids(with_boundaries([["bank", "river"], ["loan"]]))
    for a, b in zip(lm.bilm(chars).activations, loaded.bilm(chars).activations, strict=True):
        assert torch.equal(a, b)


def test_kim_model_round_trips_and_refuses_elmo_embeddings(tmp_path, capsys):
    """Without the token projection (and with Kim's zero padding character) the options say
    so; such a model evaluates as a language model, and asking it for ELMo embeddings is a
    one-line error."""
    torch.manual_seed(0)
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", "bank", "river", "loan"])
    config = preset("kim_small")
    config.char_cnn.zero_padding_char = True
    lm = LanguageModel(config, len(vocab)).eval()
    save_model_dir(lm, vocab, tmp_path / "model")
    options = json.loads((tmp_path / "model" / "options.json").read_text())
    assert options["char_cnn"]["projection"] is False
    assert options["char_cnn"]["zero_padding_char"] is True
    loaded, _ = load_model_dir(tmp_path / "model")
    assert loaded.bilm.char_encoder.projection is None
    assert loaded.config.char_cnn.zero_padding_char
    # Kim's two LSTM biases are stored as bilm-tf's one B, their sum: the same function.
    assert not loaded.config.lstm.recurrent_bias
    for layer in range(2):
        assert torch.equal(loaded.bilm.lstm.bias[layer], lm.bilm.lstm.net_bias(layer))
    chars = batch_to_ids(with_boundaries([["bank", "river", "loan"]]))
    batch = Batch(
        fwd_chars=chars,
        fwd_targets=torch.tensor([[3, 4, 5, 1, 0]]),
        mask=torch.ones(1, 5, dtype=torch.bool),
        reset=torch.zeros(1, dtype=torch.bool),
    )
    torch.testing.assert_close(lm(batch).nll[0], loaded(batch).nll[0])
    (tmp_path / "in.txt").write_text("the bank\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["embed", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "in.txt"),
              "--output", str(tmp_path / "out.hdf5")])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no ELMo embeddings" in err


def test_exported_options_are_released_format(tmp_path):
    write_options(preset("elmo_small"), tmp_path / "options.json")
    options = json.loads((tmp_path / "options.json").read_text())
    assert options["char_cnn"]["n_characters"] == 262
    assert not {"projection", "zero_padding_char"} & options["char_cnn"].keys()
    assert options["lstm"] == {
        "dim": 1024, "projection_dim": 128, "n_layers": 2, "use_skip_connections": True,
        "cell_clip": 3.0, "proj_clip": 3.0,
    }  # fmt: skip
    assert read_options(tmp_path / "options.json") == preset("elmo_small").__class__(
        **{**preset("elmo_small").__dict__, "dropout": options["dropout"]}
    )


@pytest.mark.parametrize("n_characters", [261, 262])
def test_training_and_prediction_n_characters_both_load(fixtures_dir, tmp_path, n_characters):
    options = json.loads((fixtures_dir / "model" / "options.json").read_text())
    options["char_cnn"]["n_characters"] = n_characters
    config = config_from_options(options)
    assert config.lstm.cell_clip == 3 and not config.lstm.use_skip_connections


def test_wrong_n_characters_is_a_clear_error(fixtures_dir):
    options = json.loads((fixtures_dir / "model" / "options.json").read_text())
    options["char_cnn"]["n_characters"] = 300
    with pytest.raises(UserError, match="n_characters is 300"):
        config_from_options(options)


def test_options_with_another_token_width_are_a_clear_error(fixtures_dir, tmp_path):
    options = json.loads((fixtures_dir / "model" / "options.json").read_text())
    options["char_cnn"]["max_characters_per_token"] = 64
    path = tmp_path / "options.json"
    path.write_text(json.dumps(options))
    with pytest.raises(UserError, match=r"options.json: .*max_characters_per_token must be 50"):
        read_options(path)


def test_missing_dataset_and_wrong_shape_name_the_dataset(fixtures_dir, tmp_path):
    source = fixtures_dir / "model" / "lm_weights.hdf5"
    options = fixtures_dir / "model" / "options.json"
    broken = tmp_path / "broken.hdf5"
    with h5py.File(source) as src, h5py.File(broken, "w") as dst:
        for name in ("char_embed", "CNN"):
            src.copy(name, dst)
    with pytest.raises(UserError, match=r"dataset 'CNN_high_0/W_carry' is missing .*\(124, 124\)"):
        load_bilm(options, broken)
    wrong = tmp_path / "wrong.hdf5"
    with h5py.File(source) as src, h5py.File(wrong, "w") as dst:
        for name in src:
            src.copy(name, dst)
        del dst["CNN_proj/W_proj"]
        dst["CNN_proj/W_proj"] = np.zeros((124, 8), dtype=np.float32)
    with pytest.raises(
        UserError, match=r"'CNN_proj/W_proj' has shape \(124, 8\), expected \(124, 16\)"
    ):
        load_bilm(options, wrong)


def test_embed_user_errors_exit_2_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["embed", "--model", str(tmp_path / "nope"), "--input", "x", "--output", "y.hdf5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model directory not found" in err
