"""`elmo prepare`: raw text files to the memory-mapped corpus store the trainer reads."""

import argparse

from elmo_train.commands.common import (
    add_input_argument,
    add_num_proc_argument,
    add_tokenizer_arguments,
)
from elmo_train.data.files import resolve_inputs
from elmo_train.data.prepare import prepare
from elmo_train.data.tokenizer import make_tokenizer
from elmo_train.errors import UserError
from elmo_train.formats.vocab_file import Vocabulary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_argument(parser)
    parser.add_argument(
        "--vocab", required=True, help="output vocabulary (vocab.txt from elmo vocab)"
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="cache directory: the store goes to DIR/<key>/, the key hashing inputs, vocabulary and "
        "tokenizer, so training with the same data and cache directory reuses it",
    )
    add_tokenizer_arguments(parser, train=False)
    add_num_proc_argument(parser)
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if a cached store matches"
    )


def run(args: argparse.Namespace) -> None:
    files = resolve_inputs(args.input)
    if args.tokenizer == "sentencepiece" and args.sp_model is None:
        raise UserError(
            "--tokenizer sentencepiece needs --sp-model FILE (the model the vocabulary was built with)"
        )
    # The vocabulary was counted with this model: prepare loads it, never trains a new one.
    tokenizer = make_tokenizer(args.tokenizer, args.sp_model, normalize=args.normalize)
    vocab = Vocabulary.load(args.vocab)
    store = prepare(
        files,
        vocab,
        tokenizer,
        args.output,
        args.num_proc,
        max_line_bytes=args.max_line_bytes,
        force=args.force,
    )
    print(f"prepare: store {store.path}")
