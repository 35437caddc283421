"""Outputs that cannot be written (under /proc, an existing directory where a file goes, a
file where a directory goes): one line and exit 2 from the real process, before any work."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from elmo_train.demo.corpus import corpus_path
from elmo_train.formats.model_dir import save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import preset

TEXT = str(corpus_path("valid"))
VOCAB = Vocabulary(["<S>", "</S>", "<UNK>", "the", "bank"])


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paths")
    (root / "a-dir").mkdir()
    (root / "a-file").write_text("x")
    model = save_model_dir(LanguageModel(preset("tiny"), len(VOCAB)), VOCAB, root / "model")
    VOCAB.save(root / "vocab.txt")
    return {"root": root, "model": model}


def elmo(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ELMO_TRAIN_CACHE=str(cwd / "cache"))
    return subprocess.run(
        [sys.executable, "-m", "elmo_train", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line(run: subprocess.CompletedProcess, message: str) -> None:
    assert run.returncode == 2, run.stderr[-3000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("elmo: error: ") and message in lines[-1], run.stderr[-3000:]
    assert "Traceback" not in run.stderr


CASES = {
    "embed to /proc": (
        ["embed", "--model", "{model}", "--input", TEXT, "--output", "/proc/x.hdf5"],
        "cannot write --output /proc/x.hdf5 (No such file or directory)",
    ),
    "embed to a directory": (
        ["embed", "--model", "{model}", "--input", TEXT, "--output", "{root}/a-dir"],
        "--output {root}/a-dir is an existing directory: give a file path",
    ),
    "vocab to /proc": (
        ["vocab", "--input", TEXT, "--output", "/proc/vocab.txt"],
        "cannot write vocabulary file /proc/vocab.txt",
    ),
    "vocab to a directory": (
        ["vocab", "--input", TEXT, "--output", "{root}/a-dir"],
        "vocabulary file {root}/a-dir is an existing directory",
    ),
    "vocab counts under a file": (
        ["vocab", "--input", TEXT, "--output", "{root}/v.txt", "--counts", "{root}/a-file/c"],
        "cannot write counts file {root}/a-file/c",
    ),
    "evaluate cache under /proc": (
        ["evaluate", "--model", "{model}", "--input", TEXT, "--cache-dir", "/proc/cache"],
        "cannot write cache directory /proc/cache (",
    ),
    "prepare cache is a file": (
        ["prepare", "--input", TEXT, "--vocab", "{root}/vocab.txt", "--output", "{root}/a-file"],
        "{root}/a-file is a file, not a directory",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unwritable_output_is_one_line_exit_2(case, places):
    args, message = CASES[case]
    run = elmo(*(a.format(**places) for a in args), cwd=places["root"])
    assert_one_line(run, message.format(**places))
    assert not list(places["root"].glob("**/.*.partial"))


@pytest.mark.slow
def test_export_refuses_unwritable_and_foreign_directories(places, tmp_path):
    from elmo_train.training.module import BiLMModule

    module = BiLMModule(
        model=dataclasses.asdict(preset("tiny")),
        vocab_size=len(VOCAB),
        optimizer={"name": "adagrad", "lr": 0.2},
    )
    checkpoint = tmp_path / "last.ckpt"
    torch.save(
        {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(),
         "vocab": VOCAB.words},
        checkpoint,
    )  # fmt: skip
    run = elmo("export", "--checkpoint", checkpoint, "--output", "/proc/model", cwd=tmp_path)
    assert_one_line(run, "cannot write model directory /proc/model (")
    run = elmo("export", "--checkpoint", checkpoint, "--output", places["root"], cwd=tmp_path)
    assert_one_line(run, f"{places['root']} exists and is not a model directory")
    assert (places["root"] / "a-file").is_file()  # nothing of the user's was deleted
    run = elmo("export", "--checkpoint", checkpoint, "--output", tmp_path / "out", cwd=tmp_path)
    assert run.returncode == 0 and (tmp_path / "out" / "weights.hdf5").is_file(), run.stderr


@pytest.mark.slow
def test_train_cache_dir_under_proc_is_one_line(tmp_path):
    (tmp_path / "t.txt").write_text("a b c\n" * 10)
    run = elmo("train", "data=text", f"data.train={tmp_path / 't.txt'}",
               "data.cache_dir=/proc/elmo-cache", cwd=tmp_path)  # fmt: skip
    assert_one_line(run, "cannot write cache directory (data.cache_dir, $ELMO_TRAIN_CACHE) /proc")
