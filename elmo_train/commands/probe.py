"""`elmo probe wsd|pos`: per-layer word-sense and part-of-speech probes (paper §5.3)."""

import argparse

from elmo_train.commands.common import add_model_arguments, embedder_from_args
from elmo_train.errors import UserError
from elmo_train.use.probes import (
    format_table,
    plot,
    pos_probe,
    read_tagged,
    read_wsd_tsv,
    split_examples,
    wsd_probe,
)


def _common(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--plot", metavar="PNG", help="also save a bar chart of the accuracies")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per biLM batch")
    parser.add_argument("--device", default="cpu")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    probes = parser.add_subparsers(dest="probe", metavar="PROBE", required=True)
    wsd = probes.add_parser(
        "wsd",
        help="word sense: 1-nearest sense centroid per layer",
        description="Per layer, each test occurrence gets the sense of its lemma whose training "
        "centroid is most cosine-similar. Input lines: lemma<TAB>sense_id<TAB>sentence<TAB>"
        "target_token_index (0-based, whitespace tokens).",
    )
    _common(wsd)
    wsd.add_argument("--input", required=True, metavar="TSV", help="training (or all) examples")
    wsd.add_argument("--test", metavar="TSV", help="test examples (default: split --input)")
    wsd.add_argument(
        "--test-fraction",
        type=float,
        default=0.3,
        help="without --test: share of each lemma's examples held out (default: %(default)s)",
    )
    wsd.add_argument("--seed", type=int, default=0, help="seed of that split")
    pos = probes.add_parser(
        "pos",
        help="part of speech: linear probe per layer",
        description="Per layer, a softmax-regression tagger on the frozen token vectors. Input: "
        "CoNLL-U (FORM, UPOS) or token<TAB>tag lines, blank lines between sentences.",
    )
    _common(pos)
    pos.add_argument("--train", required=True, metavar="FILE")
    pos.add_argument("--test", required=True, metavar="FILE")
    pos.add_argument(
        "--epochs",
        type=int,
        default=100,
        help="full-batch L-BFGS iterations (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.probe == "wsd":
        examples = read_wsd_tsv(args.input)
        if args.test:
            train, test = examples, read_wsd_tsv(args.test)
        else:
            train, test = split_examples(examples, args.test_fraction, args.seed)
        embedder = embedder_from_args(args)
        result = wsd_probe(embedder, train, test, args.batch_size)
    else:
        if args.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {args.epochs}")
        train, test = read_tagged(args.train), read_tagged(args.test)
        embedder = embedder_from_args(args)
        result = pos_probe(embedder, train, test, args.epochs, args.batch_size)
    print(format_table(result))
    if args.plot:
        print(f"probe: wrote {plot(result, args.plot)}")
