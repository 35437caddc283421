"""The prepared corpus store: round trip, type inventory, OOV, bad input, cache, workers."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from elmo_train.data import scan
from elmo_train.data.prepare import prepare
from elmo_train.data.store import CorpusStore
from elmo_train.data.tokenizer import WhitespaceTokenizer, make_tokenizer
from elmo_train.data.vocab_builder import build_vocabulary
from elmo_train.errors import UserError
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.chars import word_to_char_ids

REPO = Path(__file__).resolve().parents[2]
LONG = "ü" * 1000  # 2,000 UTF-8 bytes: kept as a word, truncated only by the char encoder
VOCAB = Vocabulary(["<S>", "</S>", "<UNK>", "the", "cat", ".", "sat", LONG])
SENTENCES = [
    ["the", "cat", "sat", "."],
    ["a", "dog", "sat", "."],
    ["the", LONG, "."],
    ["the"],
]


def words(store: CorpusStore, i: int) -> list[str]:
    return [store.types[t] for t in store.sentence(i)]


def check_store(store: CorpusStore, sentences: list[list[str]], vocab: Vocabulary) -> None:
    """Every promise of the store format, against the sentences it was made from."""
    assert store.types[:2] == ["<S>", "</S>"]
    assert store.n_sentences == len(store) == len(sentences)
    assert store.n_tokens == sum(map(len, sentences)) == store.offsets[-1]
    assert [words(store, i) for i in range(store.n_sentences)] == sentences
    assert store.tokens.dtype == np.int32 and store.offsets.dtype == np.int64
    assert isinstance(store.tokens, np.memmap) and isinstance(store.offsets, np.memmap)
    assert store.type_chars.dtype == np.int16 and store.type_chars.shape == (len(store.types), 50)
    assert store.type_vocab.dtype == np.int64
    for t, word in enumerate(store.types):
        assert store.type_chars[t].tolist() == word_to_char_ids(word)
        assert store.type_vocab[t] == vocab.index(word)
    counts = np.bincount(store.tokens, minlength=len(store.types))[2:]
    assert (np.diff(counts) <= 0).all(), "types 2.. are ordered by descending count"
    ties = {}
    for word, count in zip(store.types[2:], counts, strict=True):
        ties.setdefault(count, []).append(word)
    assert all(group == sorted(group) for group in ties.values()), "ties alphabetical"
    with pytest.raises(IndexError):
        store.sentence(store.n_sentences)


def test_from_sentences_round_trip(tmp_path):
    store = CorpusStore.from_sentences(SENTENCES, VOCAB, tmp_path / "store")
    check_store(store, SENTENCES, VOCAB)
    assert store.types[2:5] == [".", "the", "sat"]
    assert store.type_vocab[store.types.index("dog")] == VOCAB.unk  # OOV -> <UNK>
    assert store.type_vocab[0] == VOCAB.bos and store.type_vocab[1] == VOCAB.eos
    again = CorpusStore.open(tmp_path / "store")
    assert np.array_equal(again.tokens, store.tokens) and again.meta == store.meta
    counts = store.meta["counts"]
    assert counts["oov_tokens"] == 2 and counts["oov_types"] == 2  # "a", "dog"
    assert counts["truncated"] == {"tokens": 1, "types": 1, "example": LONG}


def corpus(tmp_path: Path, name: str = "train.txt", lines: list[str] | None = None) -> Path:
    path = tmp_path / "corpus" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(" ".join(s) for s in SENTENCES) if lines is None else "\n".join(lines)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def test_prepare_round_trip(tmp_path, capsys):
    path = corpus(tmp_path)
    store = prepare([path], VOCAB, None, tmp_path / "cache", num_proc=1)
    check_store(store, SENTENCES, VOCAB)
    assert store.path.parent == tmp_path / "cache"
    meta = store.meta
    assert meta["inputs"][0]["path"] == str(path.resolve())
    assert meta["inputs"][0]["size"] == path.stat().st_size
    assert meta["tokenizer"] == {"kind": "whitespace", "normalize": None}
    assert meta["vocab"]["sha256"] == VOCAB.fingerprint()
    assert meta["counts"]["sentences"] == 4 and meta["counts"]["tokens"] == 12
    assert meta["counts"]["oov_rate"] == pytest.approx(2 / 12)
    out = capsys.readouterr().out
    assert "4 sentences, 12 tokens" in out and "OOV 2 tokens (16.67%)" in out
    assert (
        "prepare: 1 tokens (8.33%; 1 types, e.g. 'üüüüüüüüüüüüüüüüüüüüüüüü…') are longer than 48"
        in out
    )
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [store.path.name]  # no temp left


def test_prepare_bad_lines_are_counted(tmp_path, capsys):
    path = tmp_path / "bad.txt"
    with open(path, "wb") as f:
        f.write(b"the cat sat .\n")
        f.write(b"bad \xff byte\n")
        f.write(b"nul \x00 byte\n")
        f.write(b"\n   \n")
        f.write(b"y" * (10 << 20) + b"\n")  # one 10 MB line
        f.write(f"the {LONG} .\n".encode())
        f.write(b"the cat .\nthe .\n")
    store = prepare([path], VOCAB, None, tmp_path / "cache", num_proc=1)
    good = [["the", "cat", "sat", "."], ["the", LONG, "."], ["the", "cat", "."], ["the", "."]]
    check_store(store, good, VOCAB)
    counts = store.meta["counts"]
    assert counts["skipped_lines"] == {"invalid_utf8": 1, "nul_bytes": 1, "too_long": 1}
    assert counts["empty_lines"] == 2 and counts["lines"] == 9
    assert store.meta["first_skipped"]["too_long"] == {"file": str(path.resolve()), "line": 6}
    report = [
        f"skipped 1 lines that are not valid UTF-8 (first: {path.resolve()}:2)",
        f"skipped 1 lines that contain NUL bytes (first: {path.resolve()}:3)",
        f"skipped 1 lines longer than the line limit (--max-line-bytes) (first: {path.resolve()}:6)",
        "1 tokens (8.33%; 1 types, e.g.",
    ]
    out = capsys.readouterr().out
    assert all(line in out for line in report)
    # Every run says it again, also when the store comes from the cache.
    prepare([path], VOCAB, None, tmp_path / "cache", num_proc=1)
    out = capsys.readouterr().out
    assert "reusing" in out and all(line in out for line in report)


def test_prepare_refuses_a_file_that_is_mostly_not_text(tmp_path):
    """A binary file has a few lines that happen to decode: they are no corpus."""
    path = tmp_path / "model.bin"
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes() for _ in range(5)]
    path.write_bytes(b"\nthe cat sat .\n".join(noise))  # 4 lines of text among the bytes
    with pytest.raises(UserError) as caught:
        prepare([path], VOCAB, None, tmp_path / "cache", num_proc=1, say=None)
    message = str(caught.value)
    assert f"lines of {path.resolve()} are unusable" in message and "\n" not in message
    assert "this is not a text corpus" in message
    with pytest.raises(UserError, match="are unusable"):
        build_vocabulary([path])
    # Half the lines bad is still a corpus with bad lines: counted, skipped, reported.
    half = tmp_path / "half.txt"
    half.write_bytes(b"the cat .\n\xff\nthe .\n\x00\n")
    assert prepare([half], VOCAB, None, tmp_path / "cache", 1, say=None).n_sentences == 2


def test_prepare_no_usable_sentences(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"\n\xff\n \n")
    with pytest.raises(UserError, match=r"no usable sentences in .*empty\.txt \(1 lines skipped"):
        prepare([path], VOCAB, None, tmp_path / "cache", num_proc=1, say=None)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []


def test_prepare_reuses_cache_until_an_input_changes(tmp_path, capsys):
    path = corpus(tmp_path)
    first = prepare([path], VOCAB, None, tmp_path / "cache", num_proc=1)
    built = (first.path / "tokens.npy").stat().st_mtime_ns
    capsys.readouterr()
    second = prepare([str(tmp_path / "corpus" / "*.txt")], VOCAB, None, tmp_path / "cache", 1)
    assert second.path == first.path
    assert (second.path / "tokens.npy").stat().st_mtime_ns == built
    assert "reusing" in capsys.readouterr().out
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touch
    third = prepare([path], VOCAB, None, tmp_path / "cache", num_proc=1)
    assert third.path != first.path and "reusing" not in capsys.readouterr().out
    other_vocab = Vocabulary(["<S>", "</S>", "<UNK>", "the"])
    assert prepare([path], other_vocab, None, tmp_path / "cache", 1, say=None).path not in (
        first.path,
        third.path,
    )


def test_workers_give_the_same_store(tmp_path, monkeypatch):
    """`num_proc=2` (datasets workers over byte ranges) = one process, line numbers included."""
    monkeypatch.setattr(scan, "MIN_RANGE_BYTES", 200)  # many ranges from a small file
    lines = [f"s{i % 7} w{i % 13} the cat {'sat' if i % 3 else '.'}" for i in range(400)]
    lines[350] = "bad \udcff"  # becomes invalid UTF-8 below, in a late range
    path = tmp_path / "c.txt"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
    one = prepare([path], VOCAB, None, tmp_path / "one", num_proc=1, say=None)
    two = prepare([path], VOCAB, None, tmp_path / "two", num_proc=2, say=None)
    for name in ("tokens", "offsets", "type_chars", "type_vocab"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert one.types == two.types
    assert one.meta["counts"] == two.meta["counts"]
    assert two.meta["first_skipped"]["invalid_utf8"]["line"] == 351


class BrokenTokenizer(WhitespaceTokenizer):
    def encode_block(self, block: bytes):
        raise RuntimeError("tokenizer exploded\nwith a second line")

    def describe(self) -> dict:
        return {"kind": "broken"}


def test_worker_error_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "MIN_RANGE_BYTES", 20)
    path = corpus(tmp_path)
    with pytest.raises(UserError) as caught:
        prepare([path], VOCAB, BrokenTokenizer(), tmp_path / "cache", num_proc=2, say=None)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("reading the corpus failed in a worker process: RuntimeError:")
    assert "tokenizer exploded" in message


def test_open_rejects_other_directories(tmp_path):
    with pytest.raises(UserError, match=r"is not a prepared corpus \(no tokens\.npy\): build it"):
        CorpusStore.open(tmp_path)
    store = CorpusStore.from_sentences(SENTENCES, VOCAB, tmp_path / "s")
    meta = json.loads((store.path / "meta.json").read_text())
    (store.path / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    with pytest.raises(UserError, match="is not in format 2"):
        CorpusStore.open(store.path)


def test_vocabulary_without_unk_must_cover_the_corpus(tmp_path):
    vocab = Vocabulary(["<S>", "</S>", "the", "cat"], require_unk=False)
    path = corpus(tmp_path, lines=["the cat", "the dog"])
    with pytest.raises(UserError, match=r"1 token types of the corpus \(e\.g\. 'dog'\) are not in"):
        prepare([path], vocab, None, tmp_path / "cache", 1, say=None)


def test_sentencepiece_store(tmp_path):
    path = corpus(tmp_path, lines=["the cat sat on the mat .", "a dog sat on a log ."] * 10)
    tokenizer = make_tokenizer(
        "sentencepiece", tmp_path / "sp.model", train_paths=[path], vocab_size=30
    )
    vocab, _ = build_vocabulary([path], tokenizer)
    store = prepare([path], vocab, tokenizer, tmp_path / "cache", 1, say=None)
    pieces = [tokenizer.tokenize(line) for line in path.read_text().splitlines()]
    check_store(store, pieces, vocab)
    assert store.meta["counts"]["oov_tokens"] == 0
    assert store.meta["tokenizer"]["kind"] == "sentencepiece"


def test_real_corpus_slice(tmp_path):
    source = REPO.parent / "shared" / "data" / "ptb" / "valid.txt"
    if not source.is_file():
        pytest.skip(f"{source} not found")
    lines = source.read_text(encoding="utf-8").splitlines()[:500]
    path = corpus(tmp_path, "ptb.txt", lines)
    vocab, _ = build_vocabulary([path], min_count=2)
    store = prepare([path], vocab, None, tmp_path / "cache", 1, say=None)
    check_store(store, [line.split() for line in lines if line.split()], vocab)
