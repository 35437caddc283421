"""`elmo embed`: contextual embeddings of every line of a file, in bilm-tf's HDF5 layout."""

import argparse
from pathlib import Path

import h5py

from elmo_train.commands.common import (
    add_batch_and_device_arguments,
    add_model_arguments,
    embedder_from_args,
)
from elmo_train.data.files import read_sentences
from elmo_train.formats.atomic import atomic_path, check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--input", required=True, help="text file, one tokenized sentence per line")
    parser.add_argument("--output", required=True, help="HDF5 file to write")
    parser.add_argument(
        "--stateful",
        action="store_true",
        help="carry LSTM state from batch to batch in file order, as bilm-tf (default: each "
        "sentence starts from zero state, so output is deterministic)",
    )
    add_batch_and_device_arguments(parser)


def run(args: argparse.Namespace) -> None:
    output = Path(args.output)
    check_writable(output, "--output")
    embedder = embedder_from_args(args)
    sentences = read_sentences(Path(args.input), embedder.normalize)
    n_tokens = 0
    # Written beside the output and renamed: an interrupted run leaves no half file.
    with atomic_path(output, "--output") as partial, h5py.File(partial, "w") as f:
        vectors = embedder.embed(sentences, args.batch_size, args.stateful)
        for index, embedding in enumerate(vectors):
            f.create_dataset(str(index), data=embedding.numpy())
            n_tokens += embedding.shape[1]
    print(
        f"wrote {len(sentences)} sentences, {n_tokens} tokens, {embedder.n_layers} layers x "
        f"{embedder.dim} dims to {output}"
    )
