"""`elmo prepare` through the CLI entry point."""

import pytest

from elmo_train.cli import main
from elmo_train.data.store import CorpusStore


def test_vocab_then_prepare(tmp_path, capsys):
    corpus = tmp_path / "train.txt"
    corpus.write_text("the cat sat .\nthe dog sat .\na rare word\n", encoding="utf-8")
    vocab = tmp_path / "vocab.txt"
    main(["vocab", "--input", str(corpus), "--output", str(vocab), "--min-count", "2"])
    capsys.readouterr()
    cache = tmp_path / "cache"
    main(["prepare", "--input", str(corpus), "--vocab", str(vocab), "--output", str(cache),
          "--num-proc", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert "3 sentences, 11 tokens" in out and "OOV 5 tokens (45.45%)" in out
    path = out.strip().splitlines()[-1].removeprefix("prepare: store ")
    store = CorpusStore.open(path)
    assert store.n_sentences == 3 and store.types[:2] == ["<S>", "</S>"]
    main(["prepare", "--input", str(corpus), "--vocab", str(vocab), "--output", str(cache)])
    assert "reusing" in capsys.readouterr().out


def test_sentencepiece_pipeline(tmp_path, capsys):
    corpus = tmp_path / "train.txt"
    corpus.write_text("the cat sat on the mat .\na dog sat on a log .\n" * 10, encoding="utf-8")
    model, vocab = tmp_path / "sp.model", tmp_path / "vocab.txt"
    main(["vocab", "--input", str(corpus), "--output", str(vocab), "--tokenizer", "sentencepiece",
          "--sp-model", str(model), "--sp-vocab-size", "30"])  # fmt: skip
    assert model.is_file()
    main(["prepare", "--input", str(corpus), "--vocab", str(vocab), "--output", str(tmp_path / "c"),
          "--tokenizer", "sentencepiece", "--sp-model", str(model)])  # fmt: skip
    assert "OOV 0 tokens" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--vocab", "{tmp}/nope.txt"], "vocabulary file {tmp}/nope.txt not found"),
        (["--vocab", "{tmp}/v.txt", "--tokenizer", "sentencepiece"], "needs --sp-model FILE"),
        (["--vocab", "{tmp}/v.txt", "--tokenizer", "sentencepiece", "--sp-model", "{tmp}/x.model"],
         "x.model not found"),
    ],
)  # fmt: skip
def test_errors_are_one_line_exit_2(tmp_path, capsys, extra, message):
    (tmp_path / "c.txt").write_text("a b\n", encoding="utf-8")
    (tmp_path / "v.txt").write_text("<S>\n</S>\n<UNK>\na\n", encoding="utf-8")
    argv = ["prepare", "--input", str(tmp_path / "c.txt"), "--output", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        main(argv + [a.format(tmp=tmp_path) for a in extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(tmp=tmp_path) in err
