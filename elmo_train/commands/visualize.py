"""`elmo visualize`: per-layer 2-D maps of a word's contexts, with separation scores."""

import argparse
from pathlib import Path

from elmo_train.commands.common import (
    add_batch_and_device_arguments,
    add_model_arguments,
    embedder_from_args,
)
from elmo_train.data.files import normalizer, read_sentences
from elmo_train.errors import UserError
from elmo_train.use import separation, visualize


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--word", required=True, help="the word to map (exact token match)")
    parser.add_argument(
        "--input",
        help="text file, one tokenized sentence per line (default: held-out sentences of a demo "
        "word, e.g. bank, from the built-in corpus, labelled with their senses)",
    )
    parser.add_argument(
        "--labels",
        help="one label per line of --input (e.g. the sense); default: k-means clusters",
    )
    parser.add_argument("--output", required=True, metavar="PNG", help="the picture to write")
    parser.add_argument(
        "--method", choices=separation.METHODS, default="pca", help="2-D projection"
    )
    parser.add_argument(
        "--clusters",
        type=int,
        default=2,
        help="without --labels: k-means clusters of the top LSTM layer (default: %(default)s)",
    )
    parser.add_argument("--html", metavar="FILE", help="also a self-contained page: hover a point")
    parser.add_argument("--json", metavar="FILE", help="also the scores and points as JSON")
    parser.add_argument("--seed", type=int, default=0, help="k-means and UMAP seed")
    add_batch_and_device_arguments(parser)


def read_inputs(
    args: argparse.Namespace, normalize: str | None
) -> tuple[list[list[str]], list[str] | None]:
    """The sentences (in Unicode form `normalize`) and their labels (None without --labels)."""
    if args.input is None:
        return visualize.demo_occurrences(args.word)
    path = Path(args.input)
    sentences = read_sentences(path, normalize)
    if args.labels is None:
        return sentences, None
    labels_path = Path(args.labels)
    labels = [" ".join(tokens) for tokens in read_sentences(labels_path)]
    if len(labels) != len(sentences):
        raise UserError(
            f"{labels_path} has {len(labels)} lines and {path} {len(sentences)}; give one label "
            "per line"
        )
    return sentences, labels


def run(args: argparse.Namespace) -> None:
    if args.labels and args.input is None:
        raise UserError("--labels needs --input: they label the lines of that file")
    if args.method == "umap":
        separation.require_umap()  # before the model loads
    embedder = embedder_from_args(args)
    # The text and the word in the Unicode form the model was trained on (data.normalize).
    sentences, labels = read_inputs(args, embedder.normalize)
    word = normalizer(embedder.normalize)(args.word)
    lines = sum(word in tokens for tokens in sentences)
    if lines < visualize.MIN_OCCURRENCES:
        raise UserError(
            f"{args.input}: {args.word!r} (matched as a whole, case-sensitive token) is in "
            f"{lines} of its lines; a map needs at least {visualize.MIN_OCCURRENCES}: choose a "
            "word that occurs in more lines"
        )
    result = visualize.word_map(
        embedder,
        sentences,
        word,
        labels,
        args.clusters,
        args.method,
        args.seed,
        args.batch_size,
    )
    print(visualize.format_table(result))
    print(f"visualize: wrote {visualize.plot(result, args.output)}")
    if args.html:
        print(f"visualize: wrote {visualize.write_html(result, args.html)}")
    if args.json:
        print(f"visualize: wrote {visualize.write_json(result, args.json)}")
