"""`elmo evaluate`: held-out perplexity of a model directory, exact full softmax."""

import argparse
import time
from pathlib import Path

import torch

from elmo_train.commands.common import add_tokenizer_arguments, default_cache_dir, default_num_proc
from elmo_train.data.files import resolve_inputs
from elmo_train.data.prepare import prepare
from elmo_train.data.tokenizer import make_tokenizer
from elmo_train.errors import UserError
from elmo_train.formats.model_dir import VOCAB, load_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.use.perplexity import (
    evaluate,
    evaluation_vocabulary,
    format_table,
    intersect,
    write_json,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR", help="model directory")
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="GLOB",
        help="held-out text files or globs, one tokenized sentence per line",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument(
        "--vocab",
        nargs="+",
        metavar="FILE",
        help="evaluation vocabulary (the intersection of the files): targets outside it count as "
        "<UNK> and the model's <UNK> probability includes its mass on every word outside it, so "
        "models with different vocabularies score the same events (default: the model's own)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="rows (default: %(default)s)")
    parser.add_argument(
        "--window", type=int, default=20, help="tokens per row and batch (default: %(default)s)"
    )
    parser.add_argument(
        "--mode",
        choices=["stream", "contiguous"],
        default="stream",
        help="stream: rows take the sentences in turn (bilm-tf's test); contiguous: each row "
        "reads one contiguous part of the text, as Kim et al. (default: %(default)s)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--cache-dir",
        default=default_cache_dir(),
        help="where the prepared input is cached (default: %(default)s)",
    )
    parser.add_argument(
        "--num-proc",
        type=int,
        default=default_num_proc(),
        help="processes preparing the input (default: %(default)s)",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="DataLoader workers building batches beside the model (default: %(default)s)",
    )
    add_tokenizer_arguments(parser)


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


def _check_tokenizer(model_dir: Path, tokenizer: str) -> None:
    """A model trained on sentencepiece pieces must be evaluated on the same pieces."""
    config = model_dir / "config.yaml"
    if tokenizer == "sentencepiece" or not config.is_file():
        return
    from omegaconf import OmegaConf

    try:
        trained_with = OmegaConf.select(OmegaConf.load(config), "data.tokenizer")
    except Exception:  # a hand-edited or foreign config.yaml: nothing to check against
        return
    if trained_with == "sentencepiece":
        raise UserError(
            f"{config}: the model was trained on sentencepiece pieces; pass --tokenizer "
            "sentencepiece --sp-model FILE (the model's .model file)"
        )


def run(args: argparse.Namespace) -> None:
    for flag, value in (("--batch-size", args.batch_size), ("--window", args.window)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    if args.num_workers < 0:
        raise UserError(f"--num-workers must be 0 or more, got {args.num_workers}")
    device = _device(args.device)
    model_dir = Path(args.model)
    lm, model_vocab = load_model_dir(model_dir)
    _check_tokenizer(model_dir, args.tokenizer)
    common = intersect([Vocabulary.load(v) for v in args.vocab]) if args.vocab else None
    eval_vocab = evaluation_vocabulary(model_vocab, common)
    if args.tokenizer == "sentencepiece" and args.sp_model is None:
        raise UserError("--tokenizer sentencepiece needs --sp-model FILE (the model's .model file)")
    tokenizer = make_tokenizer(args.tokenizer, args.sp_model)
    files = resolve_inputs(args.input)
    store = prepare(
        files,
        model_vocab,
        tokenizer,
        args.cache_dir,
        args.num_proc,
        max_line_bytes=args.max_line_bytes,
    )
    if eval_vocab.coarsened:
        print(
            f"evaluate: scoring over {len(eval_vocab.vocab):,} words of {eval_vocab.vocab.source}; "
            f"{eval_vocab.collapsed_words:,} other words of the model count as <UNK>"
        )
    last_report = time.perf_counter()

    def progress(batch: int, n_batches: int, tokens: int) -> None:
        nonlocal last_report
        now = time.perf_counter()
        if now - last_report >= 30 or batch == n_batches:
            last_report = now
            print(f"evaluate: batch {batch:,}/{n_batches:,}, {tokens:,} targets", flush=True)

    result = evaluate(
        lm,
        store,
        eval_vocab,
        batch_size=args.batch_size,
        window=args.window,
        mode=args.mode,
        device=device,
        num_workers=args.num_workers,
        progress=progress,
    )
    metrics = result.metrics()
    print(format_table(metrics))
    if args.json:
        vocab = eval_vocab.vocab
        write_json(
            args.json,
            {
                **metrics,
                "model": str(model_dir),
                "inputs": [str(f) for f in files],
                "vocab": {
                    "source": vocab.source or str(model_dir / VOCAB),
                    "size": len(vocab),
                    "words_sha256": eval_vocab.fingerprint(),
                    "coarsened": eval_vocab.coarsened,
                    "collapsed_words": eval_vocab.collapsed_words,
                },
                "batch_size": args.batch_size,
                "window": args.window,
                "device": str(device),
            },
        )
        print(f"evaluate: wrote {args.json}")
