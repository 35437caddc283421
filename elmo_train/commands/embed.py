"""`elmo embed`: contextual embeddings of every line of a file, in bilm-tf's HDF5 layout."""

import argparse
from pathlib import Path

import h5py

from elmo_train.embedder import Embedder
from elmo_train.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("model (a model directory, or released bilm-tf files)")
    source.add_argument("--model", help="model directory written by elmo export or elmo train")
    source.add_argument("--options", help="options.json of released weights")
    source.add_argument("--weights", help="weights.hdf5 of released weights")
    parser.add_argument("--input", required=True, help="text file, one tokenized sentence per line")
    parser.add_argument("--output", required=True, help="HDF5 file to write")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--stateful",
        action="store_true",
        help="carry LSTM state from batch to batch in file order, as bilm-tf (default: each "
        "sentence starts from zero state, so output is deterministic)",
    )
    parser.add_argument("--device", default="cpu")


def read_sentences(path: Path) -> list[list[str]]:
    """Every line of `path`, whitespace-tokenized; line i stays sentence i."""
    if not path.is_file():
        raise UserError(
            f"{path}: input file not found; pass a text file with one sentence per line"
        )
    sentences, bad_lines = [], []
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                text = line.decode("utf-8", errors="replace")
                bad_lines.append(number)
            sentences.append(text.split())
    if bad_lines:
        print(
            f"{path}: {len(bad_lines)} lines are not valid UTF-8 (first: line {bad_lines[0]}); "
            "invalid bytes were replaced"
        )
    return sentences


def embedder_from_args(args: argparse.Namespace) -> Embedder:
    if args.model and (args.options or args.weights):
        raise UserError("give either --model DIR or --options FILE --weights FILE, not both")
    if args.model:
        return Embedder.from_model_dir(args.model, args.device)
    if args.options and args.weights:
        return Embedder.from_files(args.options, args.weights, args.device)
    raise UserError("no model: pass --model DIR, or --options FILE --weights FILE")


def run(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    embedder = embedder_from_args(args)
    sentences = read_sentences(Path(args.input))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    n_tokens = 0
    with h5py.File(output, "w") as f:
        vectors = embedder.embed(sentences, args.batch_size, args.stateful)
        for index, embedding in enumerate(vectors):
            f.create_dataset(str(index), data=embedding.numpy())
            n_tokens += embedding.shape[1]
    print(
        f"wrote {len(sentences)} sentences, {n_tokens} tokens, {embedder.n_layers} layers x "
        f"{embedder.dim} dims to {output}"
    )
