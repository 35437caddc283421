"""`elmo vocab`: an output vocabulary in bilm-tf format, counted from the corpus files."""

import argparse
import os

from elmo_train.commands.common import (
    add_input_argument,
    add_num_proc_argument,
    add_tokenizer_arguments,
)
from elmo_train.data.files import SkipStats, resolve_inputs
from elmo_train.data.scan import Truncation
from elmo_train.data.tokenizer import make_tokenizer
from elmo_train.data.vocab_builder import build_vocabulary, write_counts
from elmo_train.formats.atomic import check_writable
from elmo_train.formats.vocab_file import SPECIALS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_argument(parser)
    parser.add_argument("--output", required=True, help="vocabulary file to write (vocab.txt)")
    parser.add_argument(
        "--min-count",
        type=int,
        default=1,
        help="drop words seen fewer times (bilm-tf's 1B-word vocabulary used 3); a "
        "sentencepiece vocabulary keeps every piece of the model",
    )
    parser.add_argument(
        "--max-size", type=int, help="keep at most this many entries, specials included"
    )
    parser.add_argument(
        "--counts", metavar="FILE", help="also write word<TAB>count in vocabulary order"
    )
    add_tokenizer_arguments(parser)
    add_num_proc_argument(parser)


def run(args: argparse.Namespace) -> None:
    files = resolve_inputs(args.input)
    check_writable(args.output, "vocabulary file")
    if args.counts:
        check_writable(args.counts, "counts file")
    train_sp = (
        args.tokenizer == "sentencepiece" and args.sp_model and not os.path.exists(args.sp_model)
    )
    tokenizer = make_tokenizer(
        args.tokenizer,
        args.sp_model,
        normalize=args.normalize,
        train_paths=files,
        vocab_size=args.sp_vocab_size,
        max_line_bytes=args.max_line_bytes,
    )
    if train_sp:
        print(
            f"vocab: trained a sentencepiece model of {len(tokenizer.inventory):,} pieces -> {args.sp_model}"
        )
    stats = SkipStats()
    vocab, counts = build_vocabulary(
        files,
        tokenizer,
        args.min_count,
        args.max_size,
        num_proc=args.num_proc,
        max_line_bytes=args.max_line_bytes,
        stats=stats,
    )
    vocab.save(args.output)
    if args.counts:
        write_counts(args.counts, vocab, counts, stats.sentences)
    kept = len(vocab) - len(SPECIALS)
    covered = sum(counts.get(word, 0) for word in vocab.words[len(SPECIALS) :])
    coverage = 100 * covered / max(1, stats.tokens)
    print(
        f"vocab: {stats.files} file(s), {stats.sentences:,} sentences, {stats.tokens:,} tokens, {len(counts):,} types"
    )
    print(
        f"vocab: kept {kept:,} words + {len(SPECIALS)} specials ({coverage:.2f}% of tokens) -> {args.output}"
    )
    truncation = Truncation.of(counts.keys(), counts.values()).report(stats.tokens)
    for line in filter(None, [*stats.report(), truncation]):
        print(f"vocab: {line}")
