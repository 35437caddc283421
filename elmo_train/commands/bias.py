"""`elmo bias`: a contextual association test (WEAT word sets, CEAT contexts) per layer."""

import argparse

from elmo_train.commands.common import (
    add_batch_and_device_arguments,
    add_model_arguments,
    embedder_from_args,
)
from elmo_train.data.files import resolve_inputs
from elmo_train.errors import UserError
from elmo_train.use.bias import (
    association_test,
    format_table,
    plot,
    write_json,
)
from elmo_train.use.word_sets import (
    builtin_tests,
    load_test,
)

FORMAT = """\
A word-set file has four lines, in any order ('#' comments and blank lines are skipped):
  X male names: John Paul Mike
  Y female names: Amy Joan Lisa
  A career: executive management salary
  B family: home parents children
the role (X, Y: targets; A, B: attributes), an optional name, a colon, then the words, each one
token of the corpus. The effect is positive when X is nearer A and Y nearer B."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = FORMAT
    add_model_arguments(parser)
    parser.add_argument(
        "--test",
        required=True,
        metavar="NAME|FILE",
        help=f"a built-in WEAT test ({', '.join(builtin_tests())}) or a word-set file",
    )
    parser.add_argument(
        "--corpus",
        nargs="+",
        required=True,
        metavar="GLOB",
        help="text files or globs, one tokenized sentence per line: the contexts of the words",
    )
    parser.add_argument(
        "--contexts",
        type=int,
        default=20,
        help="sentences per word (a random sample; template sentences top up words the corpus "
        "has fewer of) (default: %(default)s)",
    )
    parser.add_argument(
        "--draws",
        type=int,
        default=10_000,
        help="random draws of one context per word (default: %(default)s, as CEAT)",
    )
    parser.add_argument(
        "--permutations",
        type=int,
        default=100_000,
        help="permutation test: every split of X u Y if there are at most this many, else this "
        "many random ones (default: %(default)s)",
    )
    parser.add_argument(
        "--lowercase", action="store_true", help="lowercase the word sets (a lowercased corpus)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="PNG", help="also draw a forest plot")
    add_batch_and_device_arguments(parser)


def run(args: argparse.Namespace) -> None:
    for name in ("contexts", "draws", "permutations"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} must be at least 1, got {getattr(args, name)}")
    test = load_test(args.test)
    if args.lowercase:
        test = test.mapped(str.lower)
    corpus = resolve_inputs(args.corpus)
    embedder = embedder_from_args(args)
    result = association_test(
        embedder,
        test,
        corpus,
        args.contexts,
        args.draws,
        args.permutations,
        args.seed,
        args.lowercase,
        args.batch_size,
    )
    print(format_table(result))
    if args.json:
        print(f"bias: wrote {write_json(result, args.json)}")
    if args.plot:
        print(f"bias: wrote {plot(result, args.plot)}")
