"""`elmo similar`: which contexts of a word are nearest to which, at every layer of a biLM."""

import argparse
from pathlib import Path

from elmo_train.commands.common import (
    add_batch_and_device_arguments,
    add_model_arguments,
    embedder_from_args,
)
from elmo_train.data.files import normalizer, read_lines
from elmo_train.errors import UserError
from elmo_train.use.similarity import find_contexts, format_table, nearest_contexts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument(
        "--word", required=True, help="the word to compare across contexts (exact token match)"
    )
    parser.add_argument(
        "--input",
        required=True,
        help="text file, one tokenized sentence per line; 'sense<TAB>sentence' lines add sense "
        "labels and the sense-nearest-neighbour accuracy",
    )
    parser.add_argument(
        "--layer", type=int, help="show only this layer (0 = token layer; default: every layer)"
    )
    add_batch_and_device_arguments(parser)


def split_senses(path: Path, lines: list[str]) -> tuple[list[list[str]], list[str] | None]:
    """Tokenized sentences without their labels, and the labels if the lines are
    `sense<TAB>sentence`: either every non-blank line has a label or none has."""
    labelled = [i for i, line in enumerate(lines) if "\t" in line]
    if not labelled:
        return [line.split() for line in lines], None
    sentences, senses = [], []
    for i, line in enumerate(lines):
        label, tab, text = line.partition("\t")
        if not tab and line.split():
            raise UserError(
                f"{path}: line {i + 1} has no sense label but line {labelled[0] + 1} has one; "
                "write every line as sense<TAB>sentence, or no line"
            )
        if tab and not label.split():
            raise UserError(f"{path}: line {i + 1} has an empty sense label before the tab")
        sentences.append(text.split())
        senses.append(" ".join(label.split()) if tab else "")
    return sentences, senses


def run(args: argparse.Namespace) -> None:
    embedder = embedder_from_args(args)
    # The text and the word in the Unicode form the model was trained on (data.normalize).
    path = Path(args.input)
    sentences, senses = split_senses(path, read_lines(path, embedder.normalize))
    word = normalizer(embedder.normalize)(args.word)
    n_contexts = len(find_contexts(sentences, word))
    if n_contexts == 0:
        raise UserError(
            f"{path}: no line contains {args.word!r} (matched as a whole, case-sensitive token); "
            "choose a word that occurs in the file"
        )
    if n_contexts == 1:
        raise UserError(
            f"{path}: only one line contains {args.word!r}; nearest contexts need at least two"
        )
    if args.layer is not None and not 0 <= args.layer < embedder.n_layers:
        raise UserError(
            f"--layer {args.layer}: the model has layers 0 (token layer) to {embedder.n_layers - 1}"
        )
    layers = None if args.layer is None else [args.layer]
    result = nearest_contexts(embedder, sentences, word, layers, senses, args.batch_size)
    print(format_table(result))
