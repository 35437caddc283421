"""Building an output vocabulary from a corpus: count every token in one streaming pass, keep
the most frequent (bilm-tf's `vocab.txt` order: specials, then by descending count)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence

from elmo_train.data.files import MAX_LINE_BYTES, SkipStats, resolve_inputs
from elmo_train.data.scan import count_tokens
from elmo_train.data.tokenizer import WhitespaceTokenizer
from elmo_train.errors import UserError
from elmo_train.formats.atomic import write_atomic
from elmo_train.formats.vocab_file import SPECIALS, Vocabulary
from elmo_train.model.chars import BOS_TOKEN, EOS_TOKEN, UNK_TOKEN


def select_words(
    counts: Counter,
    inventory: Iterable[str] | None,
    min_count: int = 1,
    max_size: int | None = None,
) -> list[str]:
    """Words for the vocabulary (specials excluded): by descending count, ties alphabetically.

    With a fixed `inventory` (sentencepiece pieces) every piece is a candidate, counted or not,
    and `min_count` does not apply: strings outside the inventory are never added.
    `max_size` counts the specials: at most `max_size - 3` words.
    """
    if inventory is not None:
        candidates = [(counts.get(p, 0), p) for p in dict.fromkeys(inventory) if p not in SPECIALS]
    else:
        candidates = [(c, w) for w, c in counts.items() if c >= min_count and w not in SPECIALS]
    candidates.sort(key=lambda item: (-item[0], item[1]))
    words = [word for _, word in candidates]
    if max_size is not None:
        words = words[: max(0, max_size - len(SPECIALS))]
    return words


def build_vocabulary(
    paths: Sequence[str | os.PathLike],
    tokenizer=None,
    min_count: int = 1,
    max_size: int | None = None,
    *,
    num_proc: int = 1,
    max_line_bytes: int | None = None,
    stats=None,
) -> tuple[Vocabulary, Counter]:
    """Count the corpus in one streaming pass and keep the words for the output vocabulary.

    Returns the vocabulary (`<S>`, `</S>`, `<UNK>`, then words by descending count, ties
    alphabetically) and the counts of every token type. `stats` (a `SkipStats`), when given,
    receives what the pass read and skipped.
    """
    if min_count < 1:
        raise UserError(f"--min-count {min_count}: use 1 or more")
    if max_size is not None and max_size <= len(SPECIALS):
        raise UserError(f"--max-size {max_size}: use more than {len(SPECIALS)} (the specials)")
    tokenizer = tokenizer if tokenizer is not None else WhitespaceTokenizer()
    stats = stats if stats is not None else SkipStats()
    files = resolve_inputs(paths)
    counts = count_tokens(
        files, tokenizer, stats, num_proc=num_proc, max_line_bytes=max_line_bytes or MAX_LINE_BYTES
    )
    words = select_words(counts, tokenizer.inventory, min_count, max_size)
    return Vocabulary([*SPECIALS, *words]), counts


def write_counts(
    path: str | os.PathLike, vocab: Vocabulary, counts: Counter, sentences: int
) -> None:
    """`word<TAB>count` in vocabulary order; `<S>`/`</S>` count sentences, `<UNK>` dropped tokens."""
    kept = sum(counts.get(word, 0) for word in vocab.words if word not in SPECIALS)
    special = {BOS_TOKEN: sentences, EOS_TOKEN: sentences, UNK_TOKEN: sum(counts.values()) - kept}
    lines = (f"{w}\t{special[w] if w in special else counts.get(w, 0)}\n" for w in vocab.words)
    write_atomic(path, "".join(lines), "counts file")
