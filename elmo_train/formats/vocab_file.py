"""The output vocabulary in bilm-tf's format: one token per line, line index = id.

`<S>`, `</S>`, `<UNK>` come first, then words by descending corpus count: the log-uniform
sampler of the sampled softmax (and adaptive-softmax cutoffs) assume id order = frequency order.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from elmo_train.errors import UserError
from elmo_train.formats.atomic import write_atomic
from elmo_train.model.chars import BOS_TOKEN, EOS_TOKEN, UNK_TOKEN

SPECIALS = (BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
_SKIPPED_LINE = "!!!MAXTERMID"  # lm_1b vocabularies carry it; bilm-tf skips it


class Vocabulary:
    """Output vocabulary: `words[id]`, `index(word)`; out-of-vocabulary words go to `<UNK>`.

    `<S>` and `</S>` are required; `<UNK>` too unless `require_unk=False` (a sentencepiece
    inventory can cover every input).
    """

    def __init__(self, words: Sequence[str], *, require_unk: bool = True, source: str = ""):
        words = list(words)
        _validate(words, None, source, require_unk)
        self._setup(words, source)

    def _setup(self, words: list[str], source: str) -> None:
        self.words = words
        self.source = source
        self._ids = {word: i for i, word in enumerate(self.words)}
        self.bos = self._ids[BOS_TOKEN]
        self.eos = self._ids[EOS_TOKEN]
        self.unk: int | None = self._ids.get(UNK_TOKEN)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._ids

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words{', ' + self.source if self.source else ''})"

    def index(self, word: str) -> int:
        """The id of `word`; the `<UNK>` id for an unknown word (KeyError if there is none)."""
        i = self._ids.get(word, self.unk)
        if i is None:
            raise KeyError(f"{word!r} is not in the vocabulary and the vocabulary has no <UNK>")
        return i

    def ids(self, words: Iterable[str]) -> np.ndarray:
        """int64 ids of `words`, unknown ones `<UNK>` (KeyError if there is no `<UNK>`)."""
        words = list(words)
        found = np.fromiter(
            map(self._ids.get, words, itertools.repeat(-1 if self.unk is None else self.unk)),
            dtype=np.int64,
            count=len(words),
        )
        if self.unk is None and (found < 0).any():
            raise KeyError(f"{words[int(np.argmax(found < 0))]!r} is not in the vocabulary")
        return found

    def fingerprint(self) -> str:
        """sha256 of the word list: identifies the vocabulary in a prepared corpus's cache key."""
        return hashlib.sha256("\n".join(self.words).encode("utf-8")).hexdigest()

    @classmethod
    def load(cls, path: str | os.PathLike, require_unk: bool = True) -> Vocabulary:
        """Read a bilm-tf vocabulary file (`!!!MAXTERMID` lines skipped, they take no id)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UserError(
                f"vocabulary file {path} not found: build one with `elmo vocab --input ... "
                f"--output {path}`"
            ) from None
        except IsADirectoryError:
            raise UserError(f"vocabulary {path} is a directory: give the vocab.txt file") from None
        except OSError as error:
            raise UserError(f"cannot read vocabulary file {path}: {error.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            line = data[: error.start].count(b"\n") + 1
            raise UserError(
                f"vocabulary file {path} is not UTF-8 (line {line}): re-encode it as UTF-8 "
                "or rebuild it with `elmo vocab`"
            ) from None
        lines = text.removeprefix("\ufeff").split("\n")  # a byte-order mark is not a word
        if lines and lines[-1] == "":
            lines.pop()  # the final newline
        words, numbers = [], []
        for number, line in enumerate(lines, start=1):
            word = line.strip()
            if word == _SKIPPED_LINE:
                continue
            if not word:
                raise UserError(
                    f"vocabulary file {path} line {number} is empty: remove it (each line is "
                    "one token and its line index is its id)"
                )
            words.append(word)
            numbers.append(number)
        if not words:
            raise UserError(
                f"vocabulary file {path} is empty: build one with `elmo vocab --input ... "
                f"--output {path}`"
            )
        _validate(words, numbers, str(path), require_unk)
        vocab = cls.__new__(cls)
        vocab._setup(words, str(path))
        return vocab

    def save(self, path: str | os.PathLike) -> None:
        """Write one word per line (atomically: a reader never sees half a file)."""
        write_atomic(path, "".join(word + "\n" for word in self.words), "vocabulary file")


def _validate(words: list[str], numbers: list[int] | None, source: str, require_unk: bool) -> None:
    where = f"vocabulary file {source}" if source else "vocabulary"
    label = "lines" if numbers is not None else "entries"
    numbers = numbers if numbers is not None else list(range(len(words)))
    seen: dict[str, int] = {}
    for word, number in zip(words, numbers, strict=True):
        if word in seen:
            raise UserError(
                f"{where} has {word!r} twice ({label} {seen[word]} and {number}): remove the "
                "duplicate, every word must have one id"
            )
        seen[word] = number
    required = SPECIALS if require_unk else (BOS_TOKEN, EOS_TOKEN)
    missing = [token for token in required if token not in seen]
    if missing:
        raise UserError(
            f"{where} lacks {', '.join(missing)}: add them as the first lines ({', '.join(SPECIALS)}"
            " then words by descending count), or rebuild it with `elmo vocab`"
        )
