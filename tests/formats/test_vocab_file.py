"""The output vocabulary: bilm-tf format, validation that names the file and the fix, building."""

from collections import Counter

import pytest

from elmo_train.data.files import SkipStats
from elmo_train.data.scan import Truncation
from elmo_train.data.vocab_builder import build_vocabulary, select_words, write_counts
from elmo_train.errors import UserError
from elmo_train.formats.vocab_file import Vocabulary


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_load_bilm_tf_format(tmp_path):
    path = write(tmp_path / "v.txt", "<S>\n</S>\n<UNK>\n!!!MAXTERMID\nthe\n.\n")
    vocab = Vocabulary.load(path)
    assert vocab.words == ["<S>", "</S>", "<UNK>", "the", "."]  # MAXTERMID takes no id
    assert (vocab.bos, vocab.eos, vocab.unk) == (0, 1, 2)
    assert len(vocab) == 5 and "the" in vocab
    assert vocab.index(".") == 4 and vocab.index("never-seen") == 2
    assert vocab.ids(["the", "zzz", "<S>"]).tolist() == [3, 2, 0]


def test_byte_order_mark_is_not_part_of_the_first_word(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes("\ufeff<S>\n</S>\n<UNK>\nthe\n".encode())  # as Notepad saves it
    assert Vocabulary.load(path).words == ["<S>", "</S>", "<UNK>", "the"]


def test_specials_need_not_come_first(tmp_path):
    vocab = Vocabulary.load(write(tmp_path / "v.txt", "</S>\n<S>\n<UNK>\nthe\n"))
    assert (vocab.bos, vocab.eos, vocab.unk) == (1, 0, 2)  # as bilm-tf's vocab_test.txt


def test_save_round_trip(tmp_path):
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", "é", "中文", "a"])
    vocab.save(tmp_path / "out" / "v.txt")
    again = Vocabulary.load(tmp_path / "out" / "v.txt")
    assert again.words == vocab.words and again.fingerprint() == vocab.fingerprint()


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nope\.txt not found: build one with `elmo vocab"):
        Vocabulary.load(tmp_path / "nope.txt")


def test_empty_file(tmp_path):
    with pytest.raises(UserError, match=r"v\.txt is empty: build one"):
        Vocabulary.load(write(tmp_path / "v.txt", ""))


def test_not_utf8(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes(b"<S>\n</S>\n<UNK>\ncaf\xe9\n")
    with pytest.raises(UserError, match=r"v\.txt is not UTF-8 \(line 4\): re-encode it"):
        Vocabulary.load(path)


def test_duplicate_names_word_and_both_lines(tmp_path):
    path = write(tmp_path / "v.txt", "<S>\n</S>\n<UNK>\nthe\ncat\nthe\n")
    with pytest.raises(UserError, match=r"has 'the' twice \(lines 4 and 6\): remove the duplicate"):
        Vocabulary.load(path)


@pytest.mark.parametrize("missing", ["<S>", "</S>", "<UNK>"])
def test_missing_special(tmp_path, missing):
    words = [w for w in ["<S>", "</S>", "<UNK>", "the"] if w != missing]
    path = write(tmp_path / "v.txt", "\n".join(words) + "\n")
    with pytest.raises(UserError, match=rf"v\.txt lacks {missing}: add them as the first lines"):
        Vocabulary.load(path)


def test_unk_optional_when_not_required(tmp_path):
    vocab = Vocabulary.load(write(tmp_path / "v.txt", "<S>\n</S>\n▁the\n"), require_unk=False)
    assert vocab.unk is None and vocab.index("▁the") == 2
    with pytest.raises(KeyError):
        vocab.index("other")


def test_empty_line_in_the_middle(tmp_path):
    with pytest.raises(UserError, match=r"line 3 is empty: remove it"):
        Vocabulary.load(write(tmp_path / "v.txt", "<S>\n</S>\n\n<UNK>\n"))


def test_constructor_validates():
    with pytest.raises(UserError, match=r"'a' twice \(entries 3 and 4\)"):
        Vocabulary(["<S>", "</S>", "<UNK>", "a", "a"])


def test_select_words_order_min_count_max_size():
    counts = Counter({"b": 3, "a": 3, "c": 5, "d": 1, "<S>": 9})
    assert select_words(counts, None) == ["c", "a", "b", "d"]  # ties alphabetically
    assert select_words(counts, None, min_count=3) == ["c", "a", "b"]
    assert select_words(counts, None, max_size=5) == ["c", "a"]  # 3 specials + 2
    assert select_words(counts, ["z", "a", "<UNK>"]) == ["a", "z"]  # inventory: all pieces


def test_build_vocabulary_streams_and_orders(tmp_path):
    a = write(tmp_path / "a.txt", "the cat sat\nthe mat\n\n")
    b = write(tmp_path / "b.txt", "a cat\n<UNK> the\n")
    stats = SkipStats()
    vocab, counts = build_vocabulary([str(tmp_path / "*.txt")], min_count=1, stats=stats)
    assert vocab.words == ["<S>", "</S>", "<UNK>", "the", "cat", "a", "mat", "sat"]
    assert counts["the"] == 3 and counts["<UNK>"] == 1
    assert (stats.files, stats.sentences, stats.tokens, stats.empty) == (2, 4, 9, 1)
    write_counts(tmp_path / "counts.tsv", vocab, counts, stats.sentences)
    rows = [line.split("\t") for line in (tmp_path / "counts.tsv").read_text().splitlines()]
    assert rows[:4] == [["<S>", "4"], ["</S>", "4"], ["<UNK>", "1"], ["the", "3"]]
    assert [int(n) for _, n in rows[3:]] == [3, 2, 1, 1, 1]
    assert [w for w, _ in rows] == vocab.words
    assert a.exists() and b.exists()


def test_build_vocabulary_empty_corpus(tmp_path):
    write(tmp_path / "a.txt", "\n   \n")
    with pytest.raises(UserError, match=r"no usable sentences in .*a\.txt: give UTF-8 text files"):
        build_vocabulary([tmp_path / "a.txt"])


def test_build_vocabulary_all_lines_unreadable(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"\xff\xfe\n\x00\n")
    with pytest.raises(UserError, match=r"no usable sentences .*\(2 lines skipped as unreadable\)"):
        build_vocabulary([tmp_path / "a.txt"])


def test_build_vocabulary_counts_long_tokens(tmp_path):
    long = "x" * 1000
    write(tmp_path / "a.txt", f"short {long}\n{long}\n")
    vocab, counts = build_vocabulary([tmp_path / "a.txt"])
    assert long in vocab  # kept as a word; only the char encoder truncates it
    truncation = Truncation.of(counts.keys(), counts.values())
    assert truncation == Truncation(tokens=2, types=1, example=long)
    assert truncation.report(3).startswith(
        "2 tokens (66.67%; 1 types, e.g. 'xxxxxxxxxxxxxxxxxxxxxxxx…')"
    )


def test_build_vocabulary_bad_options(tmp_path):
    write(tmp_path / "a.txt", "x\n")
    with pytest.raises(UserError, match="--min-count 0"):
        build_vocabulary([tmp_path / "a.txt"], min_count=0)
    with pytest.raises(UserError, match="--max-size 3"):
        build_vocabulary([tmp_path / "a.txt"], max_size=3)
