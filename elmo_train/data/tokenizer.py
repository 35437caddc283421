"""Tokenisers: a line of text to the tokens the biLM reads (and predicts).

`WhitespaceTokenizer` is bilm-tf's `line.split()` and the default: corpora come pre-tokenized.
`SentencePieceTokenizer` makes the pieces of a sentencepiece model the tokens; the char-CNN
still reads each piece's bytes, and the output vocabulary is the piece inventory
(`elmo vocab --tokenizer sentencepiece`), ordered by corpus frequency like any other.

Either can first bring the text to a Unicode normal form (`normalize="NFC"` or `"NFKC"`), so
that `é` typed as one code point or as `e` + a combining accent is one word with one vector;
the model directory records the form and embedding applies it the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from elmo_train.data.files import MAX_LINE_BYTES, SkipStats, iter_lines, normalizer
from elmo_train.errors import UserError
from elmo_train.formats.atomic import write_atomic

TOKENIZERS = ("whitespace", "sentencepiece")


@dataclasses.dataclass
class EncodedBlock:
    """A block of lines as block-local type ids: what a corpus pass counts and stores."""

    types: list[str]  # distinct tokens of the block, in order of first appearance
    counts: np.ndarray  # (n_types,) int64 occurrences of each
    ids: np.ndarray  # (n_tokens,) int32 index into `types` of every token, in text order
    lengths: np.ndarray  # (n_lines,) int32 tokens of each line (0: a blank line)


def encode_sentences(sentences: Sequence[Sequence[str]]) -> EncodedBlock:
    """Tokenized lines to an `EncodedBlock` (C-speed Counter and dict lookups, no Python loop)."""
    lengths = np.fromiter(map(len, sentences), dtype=np.int32, count=len(sentences))
    flat = list(itertools.chain.from_iterable(sentences))
    counter = Counter(flat)
    types = list(counter)
    local = dict(zip(types, range(len(types)), strict=True))
    return EncodedBlock(
        types=types,
        counts=np.fromiter(counter.values(), dtype=np.int64, count=len(types)),
        ids=np.fromiter(map(local.__getitem__, flat), dtype=np.int32, count=len(flat)),
        lengths=lengths,
    )


class WhitespaceTokenizer:
    """Tokens are the whitespace-separated words of a line (`str.split()`), as bilm-tf."""

    kind = "whitespace"
    inventory: list[str] | None = None  # any string can be a word

    def __init__(self, normalize: str | None = None):
        self.normalize = normalize
        self._normal = normalizer(normalize)

    def tokenize(self, line: str) -> list[str]:
        return self._normal(line).split()

    def tokenize_batch(self, lines: Sequence[str]) -> list[list[str]]:
        return [self._normal(line).split() for line in lines]

    def encode_block(self, block: bytes) -> EncodedBlock:
        """Lines of a UTF-8 block (joined by newlines) to type ids, vectorised with Arrow.

        Arrow's `utf8_split_whitespace` splits at exactly the characters `str.split()` does (every
        code point checked); it differs only by empty strings at the ends of a line, dropped here.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
        offsets = np.concatenate([[0], newlines + 1, [len(block)]]).astype(np.int64)
        lines = pa.LargeStringArray.from_buffers(
            len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(block)
        )
        if self.normalize is not None:
            lines = pc.utf8_normalize(lines, form=self.normalize)
        split = pc.utf8_split_whitespace(lines)  # a line keeps its newline: whitespace too
        tokens = pc.list_flatten(split)
        line_of = pc.list_parent_indices(split)
        real = pc.not_equal(pc.binary_length(tokens), 0)
        tokens, line_of = pc.filter(tokens, real), pc.filter(line_of, real)
        encoded = pc.dictionary_encode(tokens)
        ids = encoded.indices.to_numpy().astype(np.int32, copy=False)
        types = encoded.dictionary.to_pylist()
        return EncodedBlock(
            types=types,
            counts=np.bincount(ids, minlength=len(types)).astype(np.int64),
            ids=ids,
            lengths=np.bincount(line_of.to_numpy(), minlength=len(lines)).astype(np.int32),
        )

    def identity(self) -> dict:
        """What decides the tokens of a text: part of every cache key built from them."""
        return {"kind": self.kind, "normalize": self.normalize}

    def describe(self) -> dict:
        return self.identity()


class SentencePieceTokenizer:
    """Tokens are the pieces of a sentencepiece model (surface strings, `▁` marks a word start).

    A character the model does not know comes out as its own surface piece; it is not in the
    piece inventory, so its softmax target is `<UNK>` while the char-CNN still reads its bytes
    (the same rule as an out-of-vocabulary word).
    """

    kind = "sentencepiece"

    def __init__(self, model_path: str | os.PathLike, normalize: str | None = None):
        self.normalize = normalize
        self._normal = normalizer(normalize)
        self.model_path = Path(model_path)
        try:
            self._proto = self.model_path.read_bytes()
        except FileNotFoundError:
            raise UserError(
                f"sentencepiece model {self.model_path} not found: give an existing .model "
                f"or train one with `elmo vocab --tokenizer sentencepiece --sp-model {self.model_path}`"
            ) from None
        except OSError as error:
            raise UserError(f"cannot read sentencepiece model {self.model_path}: {error}") from None
        self._processor = None
        try:
            self.processor.get_piece_size()
        except (RuntimeError, OSError):
            raise UserError(
                f"{self.model_path} is not a sentencepiece model: give the .model file that "
                "SentencePieceTrainer wrote (not the .vocab file)"
            ) from None

    @property
    def processor(self):
        # Loaded lazily so the tokenizer pickles into dataset workers as plain bytes.
        if self._processor is None:
            import sentencepiece

            self._processor = sentencepiece.SentencePieceProcessor(model_proto=self._proto)
        return self._processor

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_processor": None}  # loaded again, lazily, in a worker

    @property
    def inventory(self) -> list[str]:
        """Pieces the model can produce, without its control pieces; its unknown piece is `<UNK>`."""
        from elmo_train.model.chars import UNK_TOKEN

        sp = self.processor
        pieces = []
        for i in range(sp.get_piece_size()):
            if sp.is_unknown(i):
                pieces.append(UNK_TOKEN)
            elif not sp.is_control(i):
                pieces.append(sp.id_to_piece(i))
        return pieces

    def tokenize(self, line: str) -> list[str]:
        # Whitespace runs become one space first, so no piece ever holds a whitespace character.
        return self.processor.encode(" ".join(self._normal(line).split()), out_type=str)

    def tokenize_batch(self, lines: Sequence[str]) -> list[list[str]]:
        return self.processor.encode(
            [" ".join(self._normal(line).split()) for line in lines], out_type=str
        )

    def encode_block(self, block: bytes) -> EncodedBlock:
        """Lines of a UTF-8 block (joined by newlines) to block-local type ids."""
        return encode_sentences(self.tokenize_batch(block.decode("utf-8").split("\n")))

    def identity(self) -> dict:
        """What decides the tokens of a text (the model's bytes, not where it lies)."""
        return {
            "kind": self.kind,
            "sha256": hashlib.sha256(self._proto).hexdigest(),
            "normalize": self.normalize,
        }

    def describe(self) -> dict:
        return {**self.identity(), "model": str(self.model_path)}

    @classmethod
    def train(
        cls,
        paths: Sequence[str | os.PathLike],
        model_path: str | os.PathLike,
        vocab_size: int = 8000,
        *,
        normalize: str | None = None,
        model_type: str = "unigram",
        input_sentence_size: int = 1_000_000,
        character_coverage: float = 0.9995,
        max_line_bytes: int = MAX_LINE_BYTES,
        seed: int = 0,
        num_threads: int = 2,
    ) -> SentencePieceTokenizer:
        """Train a model on the corpus files (offline) and write it to `model_path`.

        At most `input_sentence_size` sentences (sampled, sentencepiece's reservoir) are held in
        memory. Apart from `normalize` (the same as at training and embedding time) the text is
        kept verbatim (sentencepiece's `identity` rule): the corpus is already tokenized text and
        the char-CNN reads the pieces' bytes.
        """
        import sentencepiece

        if vocab_size < 3:
            raise UserError(
                f"--sp-vocab-size {vocab_size} is too small: use at least a few hundred"
            )
        stats = SkipStats()
        normal = normalizer(normalize)
        lines = iter_lines(paths, stats, max_line_bytes)
        sentences = (" ".join(normal(line).split()) for line in lines)
        first = next(sentences, None)
        if first is None:
            raise UserError(
                "no usable sentences to train the sentencepiece model on: check the --input files"
            )
        sentences = itertools.chain([first], sentences)
        model = io.BytesIO()
        sentencepiece.set_random_generator_seed(seed)
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=sentences,
                model_writer=model,
                vocab_size=vocab_size,
                hard_vocab_limit=False,  # a small corpus gets a smaller inventory, not an error
                model_type=model_type,
                input_sentence_size=input_sentence_size,
                shuffle_input_sentence=True,
                character_coverage=character_coverage,
                normalization_rule_name="identity",
                unk_id=0,
                bos_id=-1,
                eos_id=-1,
                pad_id=-1,
                num_threads=num_threads,
                minloglevel=2,
            )
        except RuntimeError as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise UserError(f"sentencepiece training failed: {message}") from None
        write_atomic(model_path, model.getvalue(), "sentencepiece model")
        return cls(model_path, normalize)


def make_tokenizer(
    kind: str = "whitespace",
    model_path: str | os.PathLike | None = None,
    *,
    normalize: str | None = None,
    train_paths: Sequence[str | os.PathLike] | None = None,
    vocab_size: int = 8000,
    **train_options,
) -> WhitespaceTokenizer | SentencePieceTokenizer:
    """The tokenizer named `kind`, bringing text to Unicode form `normalize` first (if set).

    For `sentencepiece`, `model_path` is loaded when it exists; otherwise, with `train_paths`, a
    model is trained on them and written there.
    """
    if kind == "whitespace":
        return WhitespaceTokenizer(normalize)
    if kind == "sentencepiece":
        if model_path is None:
            raise UserError(
                "the sentencepiece tokenizer needs a model: pass --sp-model FILE (an existing "
                ".model, or where to write one trained on the inputs)"
            )
        if Path(model_path).exists() or not train_paths:
            return SentencePieceTokenizer(model_path, normalize)
        return SentencePieceTokenizer.train(
            train_paths, model_path, vocab_size, normalize=normalize, **train_options
        )
    raise UserError(f"unknown tokenizer {kind!r}: use one of {', '.join(TOKENIZERS)}")
