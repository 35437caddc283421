"""Tokenisers: whitespace as `str.split()` (vectorised path included) and sentencepiece."""

import pickle

import numpy as np
import pytest

from elmo_train.data.tokenizer import (
    SentencePieceTokenizer,
    WhitespaceTokenizer,
    encode_sentences,
    make_tokenizer,
)
from elmo_train.data.vocab_builder import build_vocabulary
from elmo_train.errors import UserError
from elmo_train.formats.vocab_file import SPECIALS, Vocabulary

CORPUS = [
    "the cat sat on the mat .",
    "the dog sat on the log .",
    "a cat and a dog met on a mat .",
    "cats and dogs are animals .",
] * 20


def decoded(block) -> list[list[str]]:
    """Per line, the tokens an `EncodedBlock` holds."""
    out, start = [], 0
    for n in block.lengths:
        out.append([block.types[i] for i in block.ids[start : start + n]])
        start += n
    return out


def test_whitespace_is_str_split():
    line = " a\tb\x0bc\u3000d\xa0e\x1cf  "
    assert WhitespaceTokenizer().tokenize(line) == ["a", "b", "c", "d", "e", "f"]


def test_whitespace_encode_block_matches_str_split():
    lines = ["", "  the  cat ", "\u3000x\xa0y\u2028z", "\t\r", "dog\x1cthe the\r", "é ü 中文", "x"]
    block = WhitespaceTokenizer().encode_block("\n".join(lines).encode())
    assert decoded(block) == [line.split() for line in lines]
    assert block.types == ["the", "cat", "x", "y", "z", "dog", "é", "ü", "中文"]
    assert block.counts.tolist() == [3, 1, 2, 1, 1, 1, 1, 1, 1]
    assert block.ids.dtype == np.int32 and block.lengths.dtype == np.int32


def test_encode_sentences():
    block = encode_sentences([["b", "a", "b"], [], ["c"]])
    assert block.types == ["b", "a", "c"]
    assert block.ids.tolist() == [0, 1, 0, 2] and block.lengths.tolist() == [3, 0, 1]
    assert block.counts.tolist() == [2, 1, 1]


@pytest.fixture
def sp_model(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    model = tmp_path / "sp" / "tiny.model"
    tokenizer = make_tokenizer("sentencepiece", model, train_paths=[corpus], vocab_size=40)
    return corpus, model, tokenizer


def test_sentencepiece_trains_and_loads(sp_model):
    corpus, model, tokenizer = sp_model
    assert model.is_file() and isinstance(tokenizer, SentencePieceTokenizer)
    pieces = tokenizer.tokenize("the cat  sat")
    assert "".join(pieces).replace("▁", " ").strip() == "the cat sat"
    again = make_tokenizer("sentencepiece", model)  # exists: loaded, not retrained
    assert again.describe() == tokenizer.describe()
    assert again.tokenize_batch(["the dog", "a mat"]) == [
        tokenizer.tokenize("the dog"),
        tokenizer.tokenize("a mat"),
    ]


def test_sentencepiece_pickles_as_bytes(sp_model):
    _, _, tokenizer = sp_model
    tokenizer.tokenize("warm up")
    clone = pickle.loads(pickle.dumps(tokenizer))
    assert clone.tokenize("the cat") == tokenizer.tokenize("the cat")


def test_sentencepiece_inventory_and_unknown_characters(sp_model):
    _, _, tokenizer = sp_model
    inventory = tokenizer.inventory
    assert "<UNK>" in inventory and "<unk>" not in inventory and "<s>" not in inventory
    pieces = tokenizer.tokenize("the 中 cat")
    assert "中" in pieces and "中" not in inventory  # real characters in, <UNK> as a target


def test_sentencepiece_vocabulary_is_the_inventory_by_frequency(sp_model):
    corpus, _, tokenizer = sp_model
    vocab, counts = build_vocabulary([corpus], tokenizer, min_count=5)
    assert vocab.words[:3] == list(SPECIALS)
    assert sorted(vocab.words[3:]) == sorted(p for p in tokenizer.inventory if p not in SPECIALS)
    ordered = [counts.get(p, 0) for p in vocab.words[3:]]
    assert ordered == sorted(ordered, reverse=True)
    vocab.save(corpus.parent / "vocab.txt")
    assert Vocabulary.load(corpus.parent / "vocab.txt").words == vocab.words


def test_sentencepiece_errors(tmp_path):
    with pytest.raises(UserError, match="needs a model: pass --sp-model"):
        make_tokenizer("sentencepiece")
    with pytest.raises(UserError, match=r"missing\.model not found"):
        make_tokenizer("sentencepiece", tmp_path / "missing.model")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a model")
    with pytest.raises(UserError, match="is not a sentencepiece model"):
        make_tokenizer("sentencepiece", junk)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(UserError, match="no usable sentences"):
        make_tokenizer("sentencepiece", tmp_path / "new.model", train_paths=[blank])
    with pytest.raises(UserError, match="unknown tokenizer 'bpe'"):
        make_tokenizer("bpe")


NFC_WORD, NFD_WORD = "caf\u00e9", "cafe\u0301"  # é as one code point, and e + combining acute


@pytest.mark.parametrize("form", ["NFC", "NFKC"])
def test_normalized_text_gives_one_token_for_both_spellings(form):
    import unicodedata

    # NFKC also folds compatibility characters: the ligature ﬁ, and ¨ (a space + a combining
    # mark) which splits a word; the vectorised path must split exactly where str.split does.
    lines = [f"{NFC_WORD} {NFD_WORD}", "\ufb01ne a\u00a8b", ""]
    tokenizer = make_tokenizer("whitespace", normalize=form)
    expected = [unicodedata.normalize(form, line).split() for line in lines]
    assert [tokenizer.tokenize(line) for line in lines] == expected
    block = tokenizer.encode_block("\n".join(lines).encode())
    assert decoded(block) == expected and expected[0] == [NFC_WORD, NFC_WORD]
    assert pickle.loads(pickle.dumps(tokenizer)).tokenize(NFD_WORD) == [NFC_WORD]  # in workers
    assert tokenizer.identity() == {"kind": "whitespace", "normalize": form}
    plain = WhitespaceTokenizer()
    assert plain.tokenize(f"{NFC_WORD} {NFD_WORD}") == [NFC_WORD, NFD_WORD]  # two words


def test_sentencepiece_normalizes_before_cutting_pieces(sp_model):
    _, model, tokenizer = sp_model
    nfc = make_tokenizer("sentencepiece", model, normalize="NFC")
    assert nfc.tokenize(f"the {NFD_WORD}") == tokenizer.tokenize(f"the {NFC_WORD}")
    assert pickle.loads(pickle.dumps(nfc)).tokenize(NFD_WORD) == nfc.tokenize(NFC_WORD)
    assert nfc.identity()["sha256"] == tokenizer.identity()["sha256"]
    assert nfc.identity() != tokenizer.identity()  # so cache keys differ
