"""`elmo tag train` and `elmo tag predict` through the CLI, on a tiny random biLM: the tagger
directory and its card, predictions that keep the input, the cache, and one-line errors."""

import json
import stat

import pytest
import torch

from elmo_train.cli import main
from elmo_train.formats.atomic import umask
from elmo_train.formats.model_dir import save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import preset

TRAIN = """Acute\tB-Disease
renal\tI-Disease
failure\tI-Disease
after\tO
cisplatin\tB-Chemical
.\tO

The\tO
patient\tO
had\tO
migraine\tB-Disease
.\tO
"""
DEV = "Severe\tO\nmigraine\tB-Disease\nattacks\tI-Disease\n\nNo\tO\nlithium\tB-Chemical\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tag")
    torch.manual_seed(0)
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", "the"])
    model = save_model_dir(LanguageModel(preset("tiny"), len(vocab)), vocab, root / "model")
    paths = {"root": root, "model": model}
    for name, text in (("train", TRAIN), ("dev", DEV), ("test", DEV)):
        paths[name] = root / f"{name}.tsv"
        paths[name].write_text(text, encoding="utf-8")
    return paths


def train_args(files, output, *extra) -> list[str]:
    return [
        "tag", "train", "--train", str(files["train"]), "--dev", str(files["dev"]),
        "--test", str(files["test"]), "--output", str(output), "--epochs", "1",
        "--cache-dir", str(files["root"] / "cache"), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def tagger(files):
    output = files["root"] / "tagger"
    main(
        train_args(
            files,
            output,
            "--model",
            str(files["model"]),
            "--json",
            str(files["root"] / "scores.json"),
        )
    )
    return output


def test_tagger_directory_card_and_json(tagger, files):
    names = {p.name for p in tagger.iterdir()}
    assert names == {
        "tagger.safetensors",
        "config.json",
        "tags.txt",
        "words.txt",
        "card.json",
        "README.md",
        "bilm",
    }
    assert (tagger / "bilm" / "weights.hdf5").read_bytes() == (
        files["model"] / "weights.hdf5"
    ).read_bytes()
    card = json.loads((tagger / "card.json").read_text())
    assert card["features"] == "elmo"  # the default with a biLM
    assert card["bilm"]["source"] == str(files["model"]) and card["bilm"]["n_layers"] == 3
    mix = card["scalar_mix"]
    assert mix["layers"] == ["token", "lstm 1", "lstm 2"] and len(mix["weights"]) == 3
    assert sum(mix["weights"]) == pytest.approx(1.0, abs=1e-6) and mix["gamma"] > 0
    scores = json.loads((files["root"] / "scores.json").read_text())
    assert scores == card["scores"] and set(scores) == {"dev", "test"}
    assert set(scores["test"]) == {"precision", "recall", "f1", "per_type"}
    assert set(scores["test"]["per_type"]) <= {"Chemical", "Disease"}
    assert (tagger / "tags.txt").read_text().split() == [
        "O",
        "B-Chemical",
        "I-Chemical",
        "B-Disease",
        "I-Disease",
    ]


def test_the_tagger_directory_follows_the_umask(tagger):
    # tempfile.mkdtemp alone gave 0700 and safetensors 0600: colleagues could not read it.
    mask = umask()
    assert stat.S_IMODE(tagger.stat().st_mode) == 0o777 & ~mask
    for path in tagger.rglob("*"):
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_training_prints_the_timing_of_each_part(files, capsys):
    main(
        train_args(
            files, files["root"] / "again", "--model", str(files["model"]), "--features", "token"
        )
    )
    out = capsys.readouterr().out
    # The first tagger cached every split's features: this one only reads them.
    assert out.count("read from the cache") == 3 and "computed" not in out
    assert "epoch 1/1: loss" in out and "sentences/s)" in out
    assert "overall" in out and "tagger written to" in out
    assert json.loads((files["root"] / "again" / "card.json").read_text())["scalar_mix"] is None


def test_a_seed_gives_one_tagger_whether_or_not_the_features_were_cached(tagger, files):
    again = files["root"] / "same_seed"
    main(train_args(files, again, "--model", str(files["model"])))  # features from the cache
    weights = (again / "tagger.safetensors").read_bytes()
    assert weights == (tagger / "tagger.safetensors").read_bytes()


@pytest.mark.parametrize("kind", ["tagged", "conll", "tokens"])
def test_predict_keeps_the_input_and_adds_valid_tags(tagger, files, tmp_path, capsys, kind):
    text = {
        "tagged": TRAIN,
        "conll": TRAIN.replace("\t", " NN "),
        "tokens": "".join(line.split("\t")[0] + "\n" for line in TRAIN.splitlines()),
    }[kind]
    source = tmp_path / "input.txt"
    source.write_text(text, encoding="utf-8")
    output = tmp_path / "out.txt"
    main(["tag", "predict", "--tagger", str(tagger), "--input", str(source), "--output", str(output),
          "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    tags = set((tagger / "tags.txt").read_text().split())
    got, expected = output.read_text().split("\n\n"), text.strip("\n").split("\n\n")
    assert len([s for s in got if s.strip()]) == len(expected) == 2
    for sentence_out, sentence_in in zip(got, expected, strict=False):
        for line_out, line_in in zip(
            sentence_out.splitlines(), sentence_in.splitlines(), strict=True
        ):
            separator = " " if kind == "conll" else "\t"
            *kept, tag = line_out.split(separator)
            assert kept == (line_in.split(separator)[:-1] if kind != "tokens" else [line_in])
            assert tag in tags
    out = capsys.readouterr().out
    assert "tagged 2 sentences (11 tokens)" in out
    assert ("input's tags" in out) == (kind != "tokens")


def test_predict_is_the_saved_taggers_decoding(tagger, files, tmp_path):
    """Predicting the training file twice gives the same tags (the directory is complete)."""
    outputs = []
    for i in range(2):
        outputs.append(tmp_path / f"{i}.tsv")
        main(["tag", "predict", "--tagger", str(tagger), "--input", str(files["train"]),
              "--output", str(outputs[-1]), "--cache-dir", str(tmp_path / f"cache{i}")])  # fmt: skip
    assert outputs[0].read_text() == outputs[1].read_text()


def fails(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_bad_input_is_one_line(files, tmp_path, capsys):
    def with_dev(text):
        dev = tmp_path / "bad.tsv"
        dev.write_text(text, encoding="utf-8")
        args = train_args(files, tmp_path / "out", "--model", str(files["model"]))
        args[args.index("--dev") + 1] = str(dev)
        return args

    err = fails(capsys, with_dev("a\tO\nb\tB-Gene\n"))
    assert "bad.tsv:2: tag 'B-Gene' does not occur in the training file" in err
    assert "bad.tsv:2: no tab in 'b B-Disease'" in fails(capsys, with_dev("a\tO\nb B-Disease\n"))
    assert "bad.tsv: no sentences" in fails(capsys, with_dev("\n"))
    assert "--features elmo needs a biLM" in fails(
        capsys, train_args(files, tmp_path / "o", "--features", "elmo")
    )
    both = train_args(
        files, tmp_path / "o", "--model", "m", "--options", "o.json", "--weights", "w.hdf5"
    )
    assert "either --model DIR or --options" in fails(capsys, both)
    missing = train_args(files, tmp_path / "o", "--options", str(files["model"] / "options.json"))
    missing += ["--weights", str(tmp_path / "none.hdf5")]
    assert "none.hdf5: not found; give the biLM's options.json and weights.hdf5" in fails(
        capsys, missing
    )
    assert "--lr must be positive" in fails(capsys, train_args(files, tmp_path / "o", "--lr", "0"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    err = fails(capsys, train_args(files, tmp_path / "mine"))
    assert "exists and is not a tagger directory" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    predict = ["tag", "predict", "--tagger", str(tmp_path), "--input", str(files["dev"])]
    err = fails(capsys, [*predict, "--output", str(tmp_path / "x")])
    assert "tagger.safetensors is missing; pass a directory written by elmo tag train" in err


def test_stray_i_tags_are_repaired_and_said(files, tmp_path, capsys):
    dev = tmp_path / "dev.tsv"
    dev.write_text("No\tO\nmigraine\tI-Disease\n\nSevere\tB-Disease\npain\tI-Disease\n")
    args = train_args(files, tmp_path / "out")
    args[args.index("--dev") + 1] = str(dev)
    main(args)  # no biLM: features none
    out = capsys.readouterr().out
    assert f"{dev}: repaired 1 I-X tags after O or another type to B-X" in out
    assert json.loads((tmp_path / "out" / "card.json").read_text())["features"] == "none"
