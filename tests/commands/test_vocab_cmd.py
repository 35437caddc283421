"""`elmo vocab` through the CLI entry point, on bilm-tf's training fixture."""

import pytest

from elmo_train.cli import main
from elmo_train.formats.vocab_file import Vocabulary


def test_fixture_vocabulary(fixtures_dir, tmp_path, capsys):
    data = fixtures_dir / "train" / "data.txt"
    out, counts = tmp_path / "vocab.txt", tmp_path / "counts.tsv"
    main(["vocab", "--input", str(data), "--output", str(out), "--min-count", "2",
          "--counts", str(counts), "--num-proc", "1"])  # fmt: skip
    words = out.read_text(encoding="utf-8").splitlines()
    expected = (fixtures_dir / "train" / "vocab.txt").read_text(encoding="utf-8").split()
    assert len(words) == 32 and set(words) == set(expected)
    assert words[:3] == ["<S>", "</S>", "<UNK>"]
    rows = [line.split("\t") for line in counts.read_text(encoding="utf-8").splitlines()]
    assert [w for w, _ in rows] == words
    numbers = [int(n) for _, n in rows[3:]]
    assert numbers == sorted(numbers, reverse=True) and min(numbers) >= 2
    assert Vocabulary.load(out).words == words
    printed = capsys.readouterr().out
    assert "5 sentences, 134 tokens, 77 types" in printed
    assert "kept 29 words + 3 specials" in printed


def test_glob_and_workers(tmp_path, capsys):
    for name, text in [("a.txt", "x y\n"), ("b.txt", "y z y\n")]:
        (tmp_path / name).write_text(text, encoding="utf-8")
    out = tmp_path / "vocab.txt"
    main(["vocab", "--input", str(tmp_path / "*.txt"), "--output", str(out), "--num-proc", "2"])
    assert out.read_text().split() == ["<S>", "</S>", "<UNK>", "y", "x", "z"]
    assert "2 file(s), 2 sentences, 5 tokens" in capsys.readouterr().out  # small: in-process


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "{tmp}/missing.txt"], "missing.txt does not exist"),
        (["--input", "{tmp}/*.nothing"], "matches no files"),
        (["--input", "{tmp}"], "is a directory, not a text file"),
        (["--input", "{tmp}/blank.txt"], "no usable sentences"),
        (["--input", "{tmp}/blank.txt", "--min-count", "0"], "--min-count 0"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "blank.txt").write_text("\n \n", encoding="utf-8")
    argv = ["vocab", *(a.format(tmp=tmp_path) for a in args), "--output", str(tmp_path / "v.txt")]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("elmo: error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "v.txt").exists()
