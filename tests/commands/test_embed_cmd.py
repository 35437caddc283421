"""`elmo embed` (and `elmo similar`): a model directory without its softmax, the Unicode form the
model was trained with, byte-order marks, and a damaged weight file."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from elmo_train.cli import main
from elmo_train.formats.model_dir import CHECKSUMS, SOFTMAX, WEIGHTS, save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import preset
from elmo_train.use.embedder import Embedder

NFC, NFD = "caf\u00e9", "cafe\u0301"  # é as one code point, and as e + a combining accent
VOCAB = Vocabulary(["<S>", "</S>", "<UNK>", "the", NFC, "."])


def model(directory, normalize: str | None):
    torch.manual_seed(0)
    config = f"data:\n  normalize: {normalize or 'null'}\n"
    lm = LanguageModel(preset("tiny"), len(VOCAB))
    return save_model_dir(lm, VOCAB, directory, config_yaml=config)


def embed(model_dir, text: str, tmp_path, name: str = "in") -> list[np.ndarray]:
    source, out = tmp_path / f"{name}.txt", tmp_path / f"{name}.hdf5"
    source.write_bytes(text.encode())
    main(["embed", "--model", str(model_dir), "--input", str(source), "--output", str(out)])
    with h5py.File(out, "r") as f:
        return [np.asarray(f[str(i)]) for i in range(len(f))]


def test_embedding_needs_no_softmax_file(tmp_path, capsys):
    directory = model(tmp_path / "model", None)
    (directory / SOFTMAX).unlink()  # embedding never uses the output layer
    vectors = embed(directory, "the bank .\n", tmp_path)
    assert vectors[0].shape == (3, 3, 64)  # token layer + 2 LSTM layers, 2 x 32
    assert "wrote 1 sentences, 3 tokens" in capsys.readouterr().out


def test_the_trained_normal_form_is_applied_at_embedding(tmp_path):
    normalized = model(tmp_path / "nfc", "NFC")
    assert Embedder.from_model_dir(normalized).normalize == "NFC"
    a, b = embed(normalized, f"the {NFC} .\nthe {NFD} .\n", tmp_path, "nfc")
    np.testing.assert_array_equal(a, b)  # one word, one vector, whichever way it was typed
    plain = model(tmp_path / "plain", None)
    a, b = embed(plain, f"the {NFC} .\nthe {NFD} .\n", tmp_path, "plain")
    assert not np.allclose(a[:, 1], b[:, 1])  # without it: two different words


def test_a_byte_order_mark_does_not_change_the_first_word(tmp_path):
    directory = model(tmp_path / "model", None)
    (plain,) = embed(directory, "the cat .\n", tmp_path, "plain")
    (marked,) = embed(directory, "\ufeffthe cat .\n", tmp_path, "marked")
    np.testing.assert_array_equal(plain, marked)


def test_similar_matches_the_word_in_the_trained_form(tmp_path, capsys):
    directory = model(tmp_path / "model", "NFC")
    contexts = tmp_path / "contexts.txt"
    contexts.write_text(f"the {NFC} .\nthe {NFD} is open .\n", encoding="utf-8")
    main(["similar", "--model", str(directory), "--input", str(contexts), "--word", NFD])
    assert f"the [{NFC}] is open" in capsys.readouterr().out


@pytest.mark.slow
def test_damaged_weights_are_one_line_exit_2(tmp_path):
    """4 KB of random bytes inside weights.hdf5 made `elmo embed` write NaN layers, exit 0."""
    directory = model(tmp_path / "model", None)
    weights = directory / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = np.random.default_rng(0).bytes(4096)
    weights.write_bytes(bytes(data))
    (tmp_path / "in.txt").write_text("the cat .\n")
    command = [sys.executable, "-m", "elmo_train", "embed", "--model", str(directory),
               "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.hdf5")]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith(f"elmo: error: {weights}: its sha256 differs from")
    (directory / CHECKSUMS).unlink()  # as released bilm-tf files: the values are checked
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert f"elmo: error: {weights}: dataset " in run.stderr
    assert not (tmp_path / "out.hdf5").exists()
