"""`prepare`: a corpus's store under a vocabulary and tokenizer, reused from the cache or built.

A store is cached under `cache_dir/<key>`, the key hashing the inputs (path, size, mtime), the
vocabulary, the tokenizer and the format version. A build scans the corpus (`data.scan`),
merges the workers' blocks in order into temporary files, and writes the store into a
temporary directory renamed into place, so a reader never sees half a store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from elmo_train.data.files import MAX_LINE_BYTES, SkipStats, resolve_inputs
from elmo_train.data.scan import Truncation, require_text, scan, temporary_dir
from elmo_train.data.store import (
    BOS_TYPE,
    EOS_TYPE,
    FORMAT_VERSION,
    CorpusStore,
    FlatArray,
    write_store,
)
from elmo_train.data.tokenizer import WhitespaceTokenizer
from elmo_train.errors import UserError
from elmo_train.formats.atomic import writable_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.chars import BOS_TOKEN, EOS_TOKEN


def default_cache_dir() -> str:
    """Where tokenizer models, vocabularies and stores are cached: `$ELMO_TRAIN_CACHE`, else
    `~/.cache/elmo-train`."""
    return os.environ.get("ELMO_TRAIN_CACHE") or os.path.expanduser("~/.cache/elmo-train")


def input_fingerprints(files: list[Path]) -> list[dict]:
    """Path, size and modification time of each file: what says the text is unchanged."""
    return [
        {"path": str(f), "size": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files
    ]


def cache_key(files: list[Path], *parts) -> str:
    """The name of an artefact built from `files` with the settings `parts` (JSON-able)."""
    material = json.dumps([input_fingerprints(files), *parts], sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:20]


def prepare(
    paths: Sequence[str | os.PathLike],
    vocab: Vocabulary | str | os.PathLike,
    tokenizer,
    cache_dir: str | os.PathLike,
    num_proc: int = 2,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    force: bool = False,
    say: Callable[[str], None] | None = print,
) -> CorpusStore:
    """The store for `paths` (files or globs) under `vocab`: reused from `cache_dir`, else built.

    `tokenizer` None means whitespace (bilm-tf); `vocab` may be a path to a vocab.txt.

    A build runs `num_proc` `datasets` workers over byte ranges of the files, merges their blocks
    in order into temporary files, orders the types by frequency, writes the arrays in chunks
    into a temporary directory and renames it into place. Skipped lines and truncated tokens
    are reported on every call, also when the store comes from the cache. Each report line goes
    to `say` (None: silent).
    """
    say = say or (lambda line: None)
    files = resolve_inputs(paths)
    if not isinstance(vocab, Vocabulary):
        vocab = Vocabulary.load(vocab)
    tokenizer = tokenizer if tokenizer is not None else WhitespaceTokenizer()
    if num_proc < 1:
        raise UserError(f"--num-proc {num_proc}: use 1 or more")
    cache_dir = writable_dir(cache_dir, "cache directory")
    key = cache_key(
        files, FORMAT_VERSION, vocab.fingerprint(), tokenizer.identity(), max_line_bytes
    )
    target = cache_dir / key
    if not force and (target / "meta.json").is_file():
        store = CorpusStore.open(target)
        say(
            f"prepare: reusing {target} ({store.n_sentences:,} sentences, {store.n_tokens:,} tokens)"
        )
        _report(store, say)
        return store

    started = time.perf_counter()
    inputs = input_fingerprints(files)
    size = sum(i["size"] for i in inputs)
    say(f"prepare: {len(files)} file(s), {size / 1e6:,.1f} MB, --num-proc {num_proc} -> {target}")
    stats = SkipStats()
    with temporary_dir(cache_dir) as work:
        build = work / "store"
        n_types = _build(
            files,
            vocab,
            tokenizer,
            stats,
            num_proc,
            max_line_bytes,
            work,
            build,
            {
                "key": key,
                "inputs": inputs,
                "tokenizer": tokenizer.describe(),
                "max_line_bytes": max_line_bytes,
            },
        )
        if force or not (target / "meta.json").is_file():  # else another process was faster
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
            try:
                os.replace(build, target)
            except OSError:
                if not (target / "meta.json").is_file():
                    raise
    store = CorpusStore.open(target)
    counts = store.meta["counts"]
    seconds = time.perf_counter() - started
    say(
        f"prepare: {counts['sentences']:,} sentences, {counts['tokens']:,} tokens, "
        f"{n_types:,} types; OOV {counts['oov_tokens']:,} tokens ({100 * counts['oov_rate']:.2f}%) "
        f"against a {len(vocab):,}-word vocabulary"
    )
    _report(store, say)
    say(
        f"prepare: wrote {target} in {seconds:.1f} s ({counts['tokens'] / max(seconds, 1e-9):,.0f} tokens/s)"
    )
    return store


def _report(store: CorpusStore, say) -> None:
    """The store's skipped lines and truncated tokens, one line each."""
    counts = store.meta["counts"]
    first = {r: (v["file"], v["line"]) for r, v in store.meta["first_skipped"].items()}
    lines = SkipStats(**counts["skipped_lines"], first=first).report()
    lines.append(Truncation(**counts["truncated"]).report(counts["tokens"]))
    for line in filter(None, lines):
        say(f"prepare: {line}")


def _build(files, vocab, tokenizer, stats, num_proc, max_line_bytes, work, build, meta) -> int:
    """Scan and write the store into `build`; returns the number of types."""
    type_ids: dict[str, int] = {BOS_TOKEN: BOS_TYPE, EOS_TOKEN: EOS_TYPE}
    counts = np.zeros(1 << 16, dtype=np.int64)
    n_tokens = n_sentences = 0
    with (
        open(work / "tokens.bin", "wb") as tokens_out,
        open(work / "lengths.bin", "wb") as lengths_out,
    ):
        for row in scan(
            files,
            tokenizer,
            stats,
            encode=True,
            num_proc=num_proc,
            max_line_bytes=max_line_bytes,
            work_dir=work,
        ):
            # Block-local type ids to global ones: C-speed dict lookups, new types appended.
            found = list(map(type_ids.get, row["types"]))
            if None in found:
                new = [t for t, i in zip(row["types"], found, strict=True) if i is None]
                start = len(type_ids)
                type_ids.update(zip(new, range(start, start + len(new)), strict=True))
                found = list(map(type_ids.__getitem__, row["types"]))
            to_global = np.array(found, dtype=np.int32)
            if len(type_ids) > counts.size:
                counts = np.concatenate(
                    [counts, np.zeros(max(counts.size, len(type_ids)), np.int64)]
                )
            counts[to_global] += row["counts"]  # distinct within a block
            to_global[row["ids"]].tofile(tokens_out)
            row["lengths"].tofile(lengths_out)
            n_tokens += row["ids"].size
            n_sentences += row["lengths"].size
    require_text(stats, files)
    tokens = FlatArray(work / "tokens.bin", np.int32, n_tokens)
    lengths = FlatArray(work / "lengths.bin", np.int32, n_sentences)
    types = list(type_ids)
    write_store(build, types, counts[: len(types)], tokens, lengths, vocab, stats, meta)
    return len(types)
