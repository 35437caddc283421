"""`elmo evaluate` batches the text as the model was validated in training (its config.yaml),
says which batching gave the figure, and lets explicit flags win."""

import json

import pytest
import torch
from train_helpers import compose_train_config, fast_overrides, tiny_corpus

from elmo_train.cli import main
from elmo_train.data.store import CorpusStore
from elmo_train.formats.model_dir import save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import preset
from elmo_train.use.perplexity import evaluate, evaluation_vocabulary

VOCAB = Vocabulary(["<S>", "</S>", "<UNK>", "the", "cat", "sat", "on", "mat", "."])
SENTENCES = [s.split() for s in ["the cat sat on the mat .", "the mat sat .", "cat on mat ."] * 7]
TRAINED = "data:\n  batch_size: 8\n  eval_batch_size: 3\n  window: 4\n  mode: stream\n"


@pytest.fixture
def setup(tmp_path):
    torch.manual_seed(0)
    lm = LanguageModel(preset("tiny"), len(VOCAB)).eval()
    model = save_model_dir(lm, VOCAB, tmp_path / "model", config_yaml=TRAINED)
    text = tmp_path / "held.txt"
    text.write_text("".join(" ".join(s) + "\n" for s in SENTENCES))
    store = CorpusStore.from_sentences(SENTENCES, VOCAB, tmp_path / "store")
    return lm, model, text, store


def run(model, text, tmp_path, *flags) -> tuple[dict, str]:
    out = tmp_path / "ppl.json"
    main(["evaluate", "--model", str(model), "--input", str(text), "--json", str(out),
          "--cache-dir", str(tmp_path / "cache"), "--num-proc", "1", *flags])  # fmt: skip
    return json.loads(out.read_text()), out


def figure(lm, store, **batching) -> float:
    return evaluate(lm, store, evaluation_vocabulary(VOCAB), **batching).metrics()["ppl"]


def test_default_batching_is_the_models_validation(setup, tmp_path, capsys):
    lm, model, text, store = setup
    saved, _ = run(model, text, tmp_path)
    printed = capsys.readouterr().out
    assert (saved["batch_size"], saved["window"], saved["mode"]) == (3, 4, "stream")
    assert saved["ppl"] == pytest.approx(figure(lm, store, batch_size=3, window=4), rel=1e-6)
    assert saved["ppl"] != pytest.approx(figure(lm, store, batch_size=64, window=20), rel=1e-6)
    assert (
        "evaluate: figures from batches of batch size 3 (as the model was validated), window 4 "
        "(as the model was validated), mode stream (as the model was validated); other "
        "batchings score the words in other contexts and give other figures"
    ) in printed


def test_explicit_flags_win(setup, tmp_path, capsys):
    lm, model, text, store = setup
    saved, _ = run(model, text, tmp_path, "--batch-size", "1", "--mode", "contiguous")
    assert (saved["batch_size"], saved["window"], saved["mode"]) == (1, 4, "contiguous")
    expected = figure(lm, store, batch_size=1, window=4, mode="contiguous")
    assert saved["ppl"] == pytest.approx(expected, rel=1e-6)
    assert (
        "batch size 1 (--batch-size given), window 4 (as the model was validated), mode "
        "contiguous (--mode given)"
    ) in capsys.readouterr().out


def test_without_a_training_config_the_fallback_is_named(setup, tmp_path, capsys):
    lm, model, text, store = setup
    (model / "config.yaml").write_text("")
    saved, _ = run(model, text, tmp_path)
    assert (saved["batch_size"], saved["window"]) == (64, 20)
    assert "batch size 64 (default; config.yaml does not say)" in capsys.readouterr().out


def test_sentence_mode_models_are_scored_in_sentence_mode(setup, tmp_path):
    lm, model, text, store = setup
    (model / "config.yaml").write_text(TRAINED.replace("stream", "sentence"))
    saved, _ = run(model, text, tmp_path)
    assert saved["mode"] == "sentence" and saved["tokens"] == sum(len(s) + 1 for s in SENTENCES)
    assert saved["ppl"] == pytest.approx(figure(lm, store, batch_size=3, mode="sentence"))


@pytest.mark.slow
def test_evaluate_repeats_the_figure_training_printed(tmp_path):
    """Training printed 24.95 and `elmo evaluate` 25.09 for the same model and text."""
    from elmo_train.train import train

    corpus = tiny_corpus(tmp_path / "corpus")
    overrides = fast_overrides(corpus, tmp_path / "run", tmp_path / "cache", steps=3)
    results = train(compose_train_config([*overrides, "data.eval_batch_size=3"]))
    saved, _ = run(tmp_path / "run" / "model", corpus["valid"], tmp_path)
    assert saved["batch_size"] == 3 and saved["window"] == 6
    assert saved["ppl"] == pytest.approx(results["valid"]["ppl"], rel=1e-5)
    assert saved["ppl_fwd"] == pytest.approx(results["valid"]["ppl_fwd"], rel=1e-5)
