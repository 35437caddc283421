"""The `elmo` command: one entry point, one module per subcommand in `elmo_train.commands`.

Every subcommand module exposes `HELP` (one line), `add_arguments(parser)` and `run(args)`.
`elmo train` is different: it hands all its arguments to Hydra.
"""

import argparse
import importlib
import sys

from elmo_train.errors import UserError

# name -> module in elmo_train.commands; imported lazily so `elmo --help` stays fast.
COMMANDS = {
    "vocab": "vocab",
    "prepare": "prepare",
    "evaluate": "evaluate",
    "export": "export",
    "embed": "embed",
    "similar": "similar",
    "probe": "probe",
}

TRAIN_HELP = "train a biLM (Hydra overrides, -m sweeps, --cfg job); no arguments: a tiny demo model"


def _command(name: str):
    return importlib.import_module(f"elmo_train.commands.{COMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elmo",
        description="Pretrain, adapt and use ELMo-style biLMs (bilm-tf and AllenNLP compatible).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help=TRAIN_HELP, add_help=False)
    for name in COMMANDS:
        module = _command(name)
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] == "train":
            # Hydra parses sys.argv itself (overrides, -m, --cfg). argv[0] becomes the train
            # script so Lightning's DDP launcher can re-execute it for the other ranks.
            from elmo_train import train

            sys.argv = [train.__file__, *argv[1:]]
            train.main()
            return
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            raise SystemExit(2)
        _command(args.command).run(args)
    except UserError as error:
        print(f"elmo: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
