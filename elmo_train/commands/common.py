"""Arguments and helpers shared by several `elmo` subcommands (each command module stays a shell)."""

import argparse
import os

import torch

from elmo_train.data.files import MAX_LINE_BYTES, NORMAL_FORMS
from elmo_train.data.tokenizer import TOKENIZERS
from elmo_train.errors import UserError
from elmo_train.use.embedder import Embedder


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model DIR, or --options/--weights of released bilm-tf files (see `embedder_from_args`)."""
    source = parser.add_argument_group("model (a model directory, or released bilm-tf files)")
    source.add_argument("--model", help="model directory written by elmo export or elmo train")
    source.add_argument("--options", help="options.json of released weights")
    source.add_argument("--weights", help="weights.hdf5 of released weights")


def embedder_from_args(args: argparse.Namespace) -> Embedder:
    if args.model and (args.options or args.weights):
        raise UserError("give either --model DIR or --options FILE --weights FILE, not both")
    if args.model:
        return Embedder.from_model_dir(args.model, args.device)
    if args.options and args.weights:
        return Embedder.from_files(args.options, args.weights, args.device)
    raise UserError("no model: pass --model DIR, or --options FILE --weights FILE")


def add_batch_and_device_arguments(parser: argparse.ArgumentParser) -> None:
    """--batch-size and --device of a command that runs a biLM over sentences."""
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        help="sentences per biLM batch (default: %(default)s)",
    )
    add_device_argument(parser)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda, cuda:1, ...")


def device_name(text: str) -> str:
    """An argparse type: a torch device this machine has (argparse names the flag in its error)."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a device: use cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: CUDA is not available here; use cpu")
    return text


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
        type=positive_int,
        default=default_num_proc(),
        help="worker processes (default: %(default)s)",
    )


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (argparse names the flag in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: use 1 or more")
    return value


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
        "--normalize",
        choices=NORMAL_FORMS,
        help="bring the text to this Unicode normal form first, as data.normalize in training "
        "(default: none)",
    )
    parser.add_argument(
        "--max-line-bytes",
        type=positive_int,
        default=MAX_LINE_BYTES,
        help="skip (and count) longer lines (default: %(default)s)",
    )


def default_num_proc() -> int:
    return max(1, min(2, os.cpu_count() or 1))
