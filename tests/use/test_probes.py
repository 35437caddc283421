"""Probes: file formats and their errors, the seeded split, the per-layer mechanics on
constructed vectors (perfectly separable: accuracy 1.0), the commands and their PNG."""

import zlib
from pathlib import Path

import pytest
import torch

from elmo_train.cli import main
from elmo_train.errors import UserError
from elmo_train.formats.model_dir import save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import BiLMConfig, CharCNNConfig, LSTMConfig, SoftmaxConfig
from elmo_train.use.probes import (
    ProbeResult,
    fit_linear_probe,
    format_table,
    nearest_centroid_senses,
    plot,
    pos_probe,
    read_tagged,
    read_wsd_tsv,
    split_examples,
    wsd_probe,
)

SHARED = Path(__file__).resolve().parents[3] / "shared"

WSD_TRAIN = """\
bank\triver\tthe bank flooded again\t1
bank\triver\ta bank eroded slowly\t1
bank\triver\tthat bank flooded twice\t1
bank\tfinance\tthe bank lent money\t1
bank\tfinance\tour bank closed early\t1
bat\tanimal\ta bat flew out\t1
bat\tsport\tthe bat broke today\t1
"""
WSD_TEST = """\
bank\triver\tone bank eroded today\t1
bank\tfinance\tmy bank lent more\t1
bank\tfinance\tthe bank closed again\t1
bat\tanimal\tthe bat flew away\t1
bat\tsport\ta bat broke again\t1
"""


def word_vector(word: str, dim: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(zlib.crc32(word.encode()))
    return torch.randn(dim, generator=generator)


class StubEmbedder:
    """Layer 0: a fixed vector per word (context-free); layer 1: the word's plus the next's."""

    n_layers = 2

    def embed(self, sentences, batch_size=64):
        for sentence in sentences:
            words = torch.stack([word_vector(w) for w in sentence])  # (n, 64)
            following = torch.cat([words[1:], torch.zeros(1, 64)])  # (n, 64)
            yield torch.stack([words, words + following])  # (2, n, 64)


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- word sense --------------------------------------------------------------------------------


def test_wsd_layers_on_constructed_vectors(tmp_path):
    train = read_wsd_tsv(write(tmp_path, "train.tsv", WSD_TRAIN))
    test = read_wsd_tsv(write(tmp_path, "test.tsv", WSD_TEST))
    result = wsd_probe(StubEmbedder(), train, test)
    # Layer 1 sees the next word, which gives the sense away: every test occurrence is right.
    # Layer 0 is context-free: centroids of one word tie, so each lemma's most frequent sense
    # (bank: river; bat: a 1-1 tie, the first seen, animal) is predicted.
    assert result.accuracies == [pytest.approx(2 / 5), 1.0]
    assert result.baselines == {"most frequent sense": pytest.approx(2 / 5)}
    assert result.best_layer == 1
    assert "layer 1 (LSTM layer 1)" in format_table(result).splitlines()[3]


def test_nearest_centroid_uses_cosine_and_unseen_lemmas_back_off(tmp_path):
    train = read_wsd_tsv(write(tmp_path, "train.tsv", WSD_TRAIN))
    test = read_wsd_tsv(write(tmp_path, "test.tsv", "cell\tbio\ta cell divided\t1\n" + WSD_TEST))
    # Train vectors: river along x, finance along y (scaled: cosine ignores length).
    axis = {"river": [5.0, 0.0], "finance": [0.0, 0.1], "animal": [1.0, 1.0], "sport": [1.0, -1.0]}
    train_vectors = torch.tensor([axis[e.sense] for e in train])
    test_vectors = torch.tensor([[0.0, 0.0], [3.0, 0.5], [0.2, 9.0], [0.1, 3.0], [2, 1.9], [2, -2]])
    predicted = nearest_centroid_senses(train_vectors, train, test_vectors, test)
    assert predicted == [
        "river",
        "river",
        "finance",
        "finance",
        "animal",
        "sport",
    ]  # cell: overall MFS


def test_split_is_seeded_and_per_lemma(tmp_path):
    lines = "".join(f"w{i % 3}\ts{i % 2}\tx y z {i}\t3\n" for i in range(30))
    examples = read_wsd_tsv(write(tmp_path, "all.tsv", lines))
    train, test = split_examples(examples, 0.3, seed=0)
    assert (len(train), len(test)) == (21, 9)  # 3 of each lemma's 10
    assert [e.where for e in test] == [e.where for e in split_examples(examples, 0.3, seed=0)[1]]
    assert [e.where for e in test] != [e.where for e in split_examples(examples, 0.3, seed=1)[1]]
    assert {e.lemma for e in test} == {"w0", "w1", "w2"}
    single = read_wsd_tsv(write(tmp_path, "one.tsv", "w\ts\ta b\t0\n"))
    assert split_examples(single, 0.9, seed=0) == (single, [])  # a lemma keeps a train example


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("bank\triver\tthe bank\n", "3 tab-separated fields, expected 4"),
        ("bank\triver\tthe bank\tone\n", "'one' is not an integer"),
        ("bank\triver\tthe bank\t2\n", "index 2 is outside the sentence's 2 tokens"),
    ],
)
def test_wsd_tsv_errors_name_file_and_line(tmp_path, line, message):
    path = write(tmp_path, "bad.tsv", "bank\triver\tthe bank\t1\n\n" + line)
    with pytest.raises(UserError, match=f"bad.tsv:3: .*{message}"):
        read_wsd_tsv(path)


# --- part of speech ----------------------------------------------------------------------------


def test_linear_probe_separates_separable_data():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=generator) * 4
    labels = torch.arange(3).repeat_interleave(40)
    features = centres[labels] + 0.3 * torch.randn(120, 16, generator=generator) + 100.0
    probe = fit_linear_probe(features, labels, 3, epochs=50)
    assert (probe(features).argmax(dim=1) == labels).all()
    again = fit_linear_probe(features, labels, 3, epochs=50)
    assert torch.equal(again.weight, probe.weight)  # deterministic


def test_pos_layers_on_constructed_vectors(tmp_path):
    # "run" is a verb before "fast" and a noun before "ended": only context tells.
    text = "I\tPRON\nrun\tVERB\nfast\tADV\n\nthe\tDET\nrun\tNOUN\nended\tVERB\n\n"
    train = read_tagged(write(tmp_path, "train.tsv", text * 3))
    test = read_tagged(write(tmp_path, "test.tsv", "I\tPRON\nrun\tNOUN\nended\tVERB\n\n" + text))
    result = pos_probe(StubEmbedder(), train, test, epochs=50)
    # Layer 1 (word + next word) tags every test token right; layer 0 cannot tell the "run"s
    # apart: a VERB and two NOUNs among the 9 test tokens, so at most 8 are right.
    assert result.accuracies[1] == 1.0
    assert result.accuracies[0] <= 8 / 9
    assert result.baselines["most frequent tag per word"] == pytest.approx(7 / 9)
    assert result.n_train == 18 and result.n_test == 9


def test_conllu_and_token_tag_formats(tmp_path):
    conllu = (
        "# sent_id = 1\n# text = Don't go\n"
        "1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
        "1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_\n"
        "2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_\n"
        "2.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t_\t_\n"
        "3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_\n\n"
        "1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_\n"
    )
    sentences = read_tagged(write(tmp_path, "a.conllu", conllu))
    assert [s.tokens for s in sentences] == [("Do", "n't", "go"), ("Yes",)]
    assert sentences[0].tags == ("AUX", "PART", "VERB")
    pairs = read_tagged(write(tmp_path, "b.tsv", "#\tSYM\nx\tNOUN\n\n\ny\tVERB\n"))
    assert [(s.tokens, s.tags) for s in pairs] == [
        (("#", "x"), ("SYM", "NOUN")),
        (("y",), ("VERB",)),
    ]


def test_tagged_file_errors_name_file_and_line(tmp_path):
    with pytest.raises(UserError, match=r"c.tsv:3: 3 tab-separated columns, expected 2"):
        read_tagged(write(tmp_path, "c.tsv", "a\tDET\n\nb\tNOUN\textra\n"))
    with pytest.raises(UserError, match=r"d.tsv:1: 4 tab-separated columns; expected CoNLL-U"):
        read_tagged(write(tmp_path, "d.tsv", "1\ta\tb\tc\n"))


def test_reads_the_shared_ner_files():
    path = SHARED / "data" / "ner" / "ncbi-disease" / "devel.tsv"
    if not path.is_file():
        pytest.skip(f"{path} not found (../shared beside the checkout)")
    sentences = read_tagged(path)
    assert len(sentences) == 923  # the counts of its README
    assert sum(len(s.tokens) for s in sentences) == 23969
    assert {t for s in sentences for t in s.tags} == {"B-Disease", "I-Disease", "O"}


# --- reporting and the commands -------------------------------------------------------------------


def test_plot_writes_a_png(tmp_path):
    result = ProbeResult("pos", [0.5, 0.9, 0.8], 10, 5, {"most frequent tag": 0.3})
    path = plot(result, tmp_path / "plots" / "pos.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    config = BiLMConfig(
        char_cnn=CharCNNConfig(embedding_dim=4, filters=[[1, 4], [2, 8]], n_highway=1),
        lstm=LSTMConfig(dim=16, projection_dim=8, n_layers=2),
        softmax=SoftmaxConfig(kind="full"),
    )
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", "bank"])
    directory = tmp_path_factory.mktemp("probe") / "model"
    return save_model_dir(LanguageModel(config, len(vocab)), vocab, directory)


def test_wsd_command(tmp_path, model_dir, capsys):
    data = write(tmp_path, "all.tsv", WSD_TRAIN + WSD_TEST)
    png = tmp_path / "wsd.png"
    main(["probe", "wsd", "--model", str(model_dir), "--input", str(data), "--plot", str(png)])
    out = capsys.readouterr().out
    assert "9 training / 3 test occurrences" in out  # 30% of bank's 8, of bat's 4
    assert "layer 2 (LSTM layer 2)" in out and "baseline: most frequent sense" in out
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_pos_command_and_errors(tmp_path, model_dir, capsys):
    train = write(tmp_path, "train.tsv", "the\tDET\nbank\tNOUN\n\na\tDET\nbat\tNOUN\n")
    main(["probe", "pos", "--model", str(model_dir), "--train", str(train), "--test", str(train)])
    assert "4 training / 4 test tokens" in capsys.readouterr().out
    bad = write(tmp_path, "bad.tsv", "the\tDET\nbank\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["probe", "pos", "--model", str(model_dir), "--train", str(bad), "--test", str(train)])
    assert exit_info.value.code == 2
    assert "bad.tsv:2: 1 tab-separated columns" in capsys.readouterr().err
