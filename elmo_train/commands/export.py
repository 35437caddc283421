"""`elmo export`: a training checkpoint to a model directory."""

import argparse

from elmo_train.training.checkpoint import export_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a .ckpt written by elmo train")
    parser.add_argument("--output", required=True, help="model directory to write")


def run(args: argparse.Namespace) -> None:
    directory = export_checkpoint(args.checkpoint, args.output)
    print(f"model directory: {directory}")
