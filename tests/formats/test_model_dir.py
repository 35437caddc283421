"""The model directory: written with the user's umask, checksummed, verified on every load, and
loadable for embedding without its output layer."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from elmo_train.errors import UserError
from elmo_train.formats.bilm_tf import load_bilm
from elmo_train.formats.model_dir import (
    CHECKSUMS,
    SOFTMAX,
    WEIGHTS,
    load_bilm_dir,
    load_model_dir,
    save_model_dir,
    training_data,
)
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import preset

VOCAB = Vocabulary(["<S>", "</S>", "<UNK>", "bank", "river", "loan"])
SAVE = """
import os, sys
os.umask(int(sys.argv[2], 8))
from elmo_train.formats.model_dir import save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import preset
vocab = Vocabulary(["<S>", "</S>", "<UNK>", "bank"])
save_model_dir(LanguageModel(preset("tiny"), len(vocab)), vocab, sys.argv[1])
"""


@pytest.fixture
def model_dir(tmp_path) -> Path:
    torch.manual_seed(0)
    return save_model_dir(LanguageModel(preset("tiny"), len(VOCAB)), VOCAB, tmp_path / "model")


def modes(directory: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(directory.stat().st_mode)}
    found.update({p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()})
    return found


@pytest.mark.parametrize(
    ("umask", "directory", "file"), [("022", 0o755, 0o644), ("027", 0o750, 0o640)]
)
def test_files_follow_the_umask_so_colleagues_can_read_them(tmp_path, umask, directory, file):
    target = tmp_path / "shared" / "model"
    subprocess.run([sys.executable, "-c", SAVE, str(target), umask], check=True, timeout=120)
    found = modes(target)
    assert found.pop(".") == directory  # tempfile.mkdtemp alone gave 0700
    assert set(found) == {
        "options.json",
        WEIGHTS,
        SOFTMAX,
        "vocab.txt",
        "config.yaml",
        "README.md",
        CHECKSUMS,
    }
    assert set(found.values()) == {file}, found  # safetensors alone gave 0600


def test_checksums_are_sha256sum_lines_of_the_model_files(model_dir):
    lines = (model_dir / CHECKSUMS).read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == [
        "options.json",
        WEIGHTS,
        SOFTMAX,
        "vocab.txt",
    ]
    check = subprocess.run(
        ["sha256sum", "--check", "--quiet", CHECKSUMS], cwd=model_dir, capture_output=True
    )
    assert check.returncode == 0, check.stdout


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_damaged_weights_are_caught_with_or_without_checksums(model_dir):
    weights = model_dir / WEIGHTS
    with h5py.File(weights, "r") as f:  # the bytes of one LSTM kernel, so the damage is data
        offset = f["RNN_0/RNN/MultiRNNCell/Cell1/LSTMCell/W_0"].id.get_offset()
    overwrite(weights, offset + 64, np.full(8, 1e-3, dtype=np.float32).tobytes())  # finite
    with pytest.raises(UserError, match=r"weights.hdf5: its sha256 differs from .*checksums"):
        load_bilm_dir(model_dir)
    with pytest.raises(UserError, match=r"weights.hdf5: its sha256 differs"):
        load_model_dir(model_dir)
    # Released bilm-tf files have no manifest: there, non-finite values are what is caught.
    (model_dir / CHECKSUMS).unlink()
    load_bilm_dir(model_dir)  # finite garbage cannot be told from weights without checksums
    overwrite(weights, offset + 64, np.full(8, np.nan, dtype=np.float32).tobytes())
    with pytest.raises(
        UserError,
        match=r"weights.hdf5: dataset 'RNN_0/RNN/MultiRNNCell/Cell1/LSTMCell/W_0' holds NaN",
    ):
        load_bilm(model_dir / "options.json", weights)


def test_non_finite_softmax_is_caught(model_dir):
    with safe_open(str(model_dir / SOFTMAX), framework="pt") as f:
        metadata = f.metadata()
    state = load_file(str(model_dir / SOFTMAX))
    name = sorted(state)[0]
    state[name].view(-1)[0] = float("inf")
    save_file(state, str(model_dir / SOFTMAX), metadata=metadata)
    (model_dir / CHECKSUMS).unlink()
    with pytest.raises(UserError, match=rf"softmax.safetensors: tensor '{name}' holds NaN or inf"):
        load_model_dir(model_dir)


def test_embedding_needs_no_softmax_but_scoring_does(model_dir):
    (model_dir / SOFTMAX).unlink()
    bilm = load_bilm_dir(model_dir)
    assert bilm.n_layers == 2 and not bilm.training
    with pytest.raises(UserError, match=r"softmax.safetensors is missing \(scoring text needs"):
        load_model_dir(model_dir)


def test_replaces_a_model_directory_but_never_other_files(model_dir, tmp_path):
    lm = LanguageModel(preset("tiny"), len(VOCAB))
    save_model_dir(lm, VOCAB, model_dir)  # a model directory: replaced
    home = tmp_path / "home"
    (home / "thesis").mkdir(parents=True)
    with pytest.raises(UserError, match="exists and is not a model directory"):
        save_model_dir(lm, VOCAB, home)
    assert (home / "thesis").is_dir()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UserError, match="is an existing file: give a directory path"):
        save_model_dir(lm, VOCAB, tmp_path / "a-file")
    with pytest.raises(UserError, match=r"cannot write model directory /proc/elmo-model \("):
        save_model_dir(lm, VOCAB, "/proc/elmo-model")
    assert not any(p.name.startswith(".model.") for p in tmp_path.iterdir())  # no staging left


def test_training_data_reads_the_recorded_data_options(model_dir):
    assert training_data(model_dir) == {}  # saved without a training config
    (model_dir / "config.yaml").write_text("data:\n  normalize: NFC\n  batch_size: 8\n")
    assert training_data(model_dir) == {"normalize": "NFC", "batch_size": 8}
    (model_dir / "config.yaml").write_text("data: [unclosed\n")
    with pytest.raises(UserError, match=r"config.yaml: not readable YAML"):
        training_data(model_dir)
    assert os.access(model_dir, os.R_OK)
