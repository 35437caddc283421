"""`elmo tag train` / `elmo tag predict`: a BiLSTM-CRF sequence tagger on frozen biLM features."""

import argparse
import logging
import shlex
from pathlib import Path

from elmo_train.commands.common import add_device_argument, add_model_arguments, positive_int
from elmo_train.data.prepare import default_cache_dir
from elmo_train.errors import UserError
from elmo_train.use.tagger.features import BiLMSource
from elmo_train.use.tagger.network import FEATURES, TaggerConfig
from elmo_train.use.tagger.recipe import predict_file, train_tagger, write_json
from elmo_train.use.tagger.training import TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = sub.add_parser(
        "train",
        help="train a tagger on IOB files; entity P/R/F1 on dev and test (seqeval)",
        description="Train a BiLSTM-CRF tagger (char CNN + word embeddings + biLM features) on "
        "token<TAB>tag files (or CoNLL columns, tag last), IOB2, a blank line between sentences.",
    )
    for split in ("train", "dev", "test"):
        train.add_argument(f"--{split}", required=True, metavar="FILE", help=f"{split} file")
    train.add_argument("--output", required=True, metavar="DIR", help="tagger directory to write")
    add_model_arguments(train)
    train.add_argument(
        "--features",
        choices=FEATURES,
        help="elmo: learned scalar mix of all biLM layers (default with a biLM); token: the "
        "biLM's token layer only; none: no biLM (default without one)",
    )
    defaults = TrainConfig()
    train.add_argument(
        "--epochs",
        type=positive_int,
        default=defaults.epochs,
        help="most epochs (default: %(default)s)",
    )
    train.add_argument(
        "--patience",
        type=positive_int,
        default=defaults.patience,
        help="stop after this many epochs without a better dev F1 (default: %(default)s)",
    )
    train.add_argument(
        "--batch-size",
        type=positive_int,
        default=defaults.batch_size,
        help="sentences per batch (default: %(default)s)",
    )
    train.add_argument(
        "--lr", type=float, default=defaults.lr, help="Adam learning rate (default: %(default)s)"
    )
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--json", metavar="FILE", help="write the dev and test scores as JSON")
    _add_common(train)

    predict = sub.add_parser(
        "predict",
        help="tag a file with a trained tagger, in the input's format",
        description="Write the input's tokens with predicted tags (the tag column replaced, or "
        "added if the input has none).",
    )
    predict.add_argument("--tagger", required=True, metavar="DIR", help="written by elmo tag train")
    predict.add_argument("--input", required=True, metavar="FILE")
    predict.add_argument("--output", required=True, metavar="FILE")
    _add_common(predict)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        default=str(Path(default_cache_dir()) / "tag-features"),
        help="where the biLM features of each file are cached (default: %(default)s)",
    )
    add_device_argument(parser)


def run(args: argparse.Namespace) -> None:
    # Lightning's INFO lines (devices, "fit stopped") say nothing the epoch lines do not.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    if args.action == "predict":
        predict_file(
            Path(args.tagger),
            Path(args.input),
            Path(args.output),
            Path(args.cache_dir),
            args.device,
        )
        return
    if args.lr <= 0 or args.seed < 0:
        raise UserError(
            f"--lr must be positive and --seed at least 0, got {args.lr} and {args.seed}"
        )
    bilm = _bilm_source(args)
    features = args.features or ("elmo" if bilm else "none")
    train_config = TrainConfig(
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
    )
    card = train_tagger(
        {"train": Path(args.train), "dev": Path(args.dev), "test": Path(args.test)},
        Path(args.output),
        TaggerConfig(features=features),
        train_config,
        bilm,
        Path(args.cache_dir),
        _command(args),
    )
    if args.json:
        write_json(Path(args.json), card)


def _command(args: argparse.Namespace) -> str:
    """The command line with every option, defaults included (for the card)."""
    parts = ["elmo", "tag", "train"]
    for key, value in vars(args).items():
        if key not in ("command", "action") and value is not None:
            parts += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(parts)


def _bilm_source(args: argparse.Namespace) -> BiLMSource | None:
    if args.model and (args.options or args.weights):
        raise UserError("give either --model DIR or --options FILE --weights FILE, not both")
    if args.model:
        return BiLMSource.from_model_dir(args.model)
    if args.options or args.weights:
        if not (args.options and args.weights):
            raise UserError("--options and --weights go together (released bilm-tf files)")
        return BiLMSource(
            Path(args.options), Path(args.weights), f"{args.options} + {args.weights}"
        )
    return None
