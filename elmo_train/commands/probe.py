"""`elmo probe wsd|pos`: per-layer word-sense and part-of-speech probes (paper §5.3)."""

import argparse

from elmo_train.commands.common import (
    add_batch_and_device_arguments,
    add_model_arguments,
    embedder_from_args,
)
from elmo_train.errors import UserError
from elmo_train.use import probes


def _common(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--plot", metavar="PNG", help="also save a bar chart of the accuracies")
    add_batch_and_device_arguments(parser)


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
    if args.probe == "wsd":
        examples = probes.read_wsd_tsv(args.input)
        if args.test:
            train, test = examples, probes.read_wsd_tsv(args.test)
        else:
            train, test = probes.split_examples(examples, args.test_fraction, args.seed)
        embedder = embedder_from_args(args)
        result = probes.wsd_probe(embedder, train, test, args.batch_size)
    else:
        if args.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {args.epochs}")
        train, test = probes.read_tagged(args.train), probes.read_tagged(args.test)
        embedder = embedder_from_args(args)
        result = probes.pos_probe(embedder, train, test, args.epochs, args.batch_size)
    print(probes.format_table(result))
    if args.plot:
        print(f"probe: wrote {probes.plot(result, args.plot)}")
