"""`elmo bias` end to end through the CLI, on a tiny random model saved to disk."""

import json

import pytest

from elmo_train.cli import main

CORPUS = """\
my brother is a doctor .
his father studied physics and chemistry .
her mother wrote poetry .
she loves art and dance .
john and paul read poetry .
"""


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


def bias(*args) -> None:
    main(["bias", *map(str, args)])


def test_a_builtin_test_prints_a_table_and_writes_json_and_a_forest_plot(model_dir, corpus, capsys):
    json_path, png = corpus.parent / "bias.json", corpus.parent / "forest.png"
    bias("--model", model_dir, "--test", "science-arts", "--corpus", corpus, "--contexts", "3",
         "--draws", "40", "--lowercase", "--json", json_path, "--plot", png)  # fmt: skip
    out = capsys.readouterr().out
    assert "science-arts: X science (8); Y arts (8); A male terms (8); B female terms (8)" in out
    assert "3 contexts per word, 40 draws" in out
    # Most words are absent from this corpus: counted, topped up with templates.
    assert "words have fewer than 3 corpus lines; topped up with" in out
    assert "absent from the corpus" in out and "fewer lines" in out
    assert "p (exact, first draw)" in out  # C(16, 8) = 12,870 splits <= 100,000
    data = json.loads(json_path.read_text())
    assert data["sets"]["X"]["words"][4] == "einstein"  # --lowercase
    assert data["words"]["physics"] == {"corpus_lines": 1, "from_corpus": 1, "templates": 2}
    assert data["words"]["nasa"] == {"corpus_lines": 0, "from_corpus": 0, "templates": 3}
    assert len(data["layers"]) == 4 and png.read_bytes()[:4] == b"\x89PNG"


def test_a_users_word_set_file(model_dir, corpus, capsys):
    sets = corpus.parent / "mine.txt"
    sets.write_text("X: brother father\nY: mother sister\nA: physics\nB: poetry\n")
    bias("--model", model_dir, "--test", sets, "--corpus", corpus, "--draws", "20")
    out = capsys.readouterr().out
    assert out.startswith("mine: X X (2); Y Y (2); A A (1); B B (1)")
    assert "p (exact, first draw)" in out


def test_absent_words_are_counted_with_a_hint_for_lowercased_corpora(model_dir, corpus, capsys):
    sets = corpus.parent / "names.txt"
    sets.write_text("X: John Paul\nY: Amy Joan\nA: physics\nB: poetry\n")
    bias("--model", model_dir, "--test", sets, "--corpus", corpus, "--draws", "20")
    out = capsys.readouterr().out
    assert "6 of 6 words have fewer than 20 corpus lines; topped up with" in out
    assert "absent from the corpus (4): John Paul Amy Joan" in out
    assert (
        "2 absent words occur lowercased (John Paul): for a lowercased corpus, add --lowercase"
        in out
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--test", "career"], "--test career: neither a built-in test"),
        (["--test", "science-arts", "--contexts", "0"], "--contexts must be at least 1, got 0"),
        (["--test", "{empty}"], "empty.txt:1: the A set (A) is empty"),
        (["--test", "career-family", "--corpus", "{absent}"], "absent.txt does not exist"),
        (["--test", "career-family"], "none of the 32 words of career-family occurs in"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(model_dir, corpus, capsys, extra, message):
    (corpus.parent / "empty.txt").write_text("A:\nB: x\nX: y\nY: z\n")
    paths = {"empty": corpus.parent / "empty.txt", "absent": corpus.parent / "absent.txt"}
    extra = [a.format(**paths) for a in extra]
    if "--corpus" not in extra:
        extra += ["--corpus", str(corpus)]
    with pytest.raises(SystemExit) as exit_info:
        bias("--model", model_dir, "--draws", "5", *extra)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
