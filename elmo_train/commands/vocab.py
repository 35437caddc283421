"""`elmo vocab`: an output vocabulary in bilm-tf format, counted from the corpus files."""

import argparse
import os

from elmo_train.data.files import MAX_LINE_BYTES, SkipStats, resolve_inputs
from elmo_train.data.tokenizer import TOKENIZERS, make_tokenizer
from elmo_train.vocab import SPECIALS, build_vocabulary, write_counts


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


def add_input_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="GLOB",
        help="text files or globs, one tokenized sentence per line",
    )


def add_num_proc_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num-proc",
        type=int,
        default=default_num_proc(),
        help="worker processes (default: %(default)s)",
    )


def add_tokenizer_arguments(parser: argparse.ArgumentParser, train: bool = True) -> None:
    """Tokenizer options; `train`: a missing sentencepiece model is trained on the inputs."""
    parser.add_argument(
        "--tokenizer",
        choices=TOKENIZERS,
        default="whitespace",
        help="whitespace (bilm-tf, default) or sentencepiece pieces",
    )
    parser.add_argument(
        "--sp-model",
        metavar="FILE",
        help="sentencepiece .model: loaded if it exists, else trained on the inputs and written there"
        if train
        else "the sentencepiece .model the vocabulary was built with",
    )
    if train:
        parser.add_argument(
            "--sp-vocab-size",
            type=int,
            default=8000,
            help="pieces of a newly trained sentencepiece model (default: %(default)s)",
        )
    parser.add_argument(
        "--max-line-bytes",
        type=int,
        default=MAX_LINE_BYTES,
        help="skip (and count) longer lines (default: %(default)s)",
    )


def default_num_proc() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def run(args: argparse.Namespace) -> None:
    files = resolve_inputs(args.input)
    train_sp = (
        args.tokenizer == "sentencepiece" and args.sp_model and not os.path.exists(args.sp_model)
    )
    tokenizer = make_tokenizer(
        args.tokenizer,
        args.sp_model,
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
    for line in stats.report():
        print(f"vocab: {line}")
