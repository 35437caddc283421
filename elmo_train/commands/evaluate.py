"""`elmo evaluate`: held-out perplexity of a model directory, exact full softmax."""

import argparse
import time
from pathlib import Path

import torch

from elmo_train.commands.common import (
    add_device_argument,
    add_tokenizer_arguments,
    default_num_proc,
    positive_int,
)
from elmo_train.data.files import resolve_inputs
from elmo_train.data.prepare import default_cache_dir, prepare
from elmo_train.data.stream import MODES
from elmo_train.data.tokenizer import make_tokenizer
from elmo_train.errors import UserError
from elmo_train.formats.atomic import check_writable
from elmo_train.formats.model_dir import CONFIG, VOCAB, load_model_dir, training_data
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.use.perplexity import (
    evaluate,
    evaluation_vocabulary,
    format_table,
    intersect,
    write_json,
)

# Batching of a model directory without its training config (released or hand-made ones).
FALLBACK_BATCHING = {"batch_size": 64, "window": 20, "mode": "stream"}


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
    # The rows and windows change which context each word is scored in, and so the figure:
    # by default they are the ones the model was validated with during training.
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        help="rows (default: the model's data.eval_batch_size or data.batch_size, as in its "
        "validation; 64 without its config.yaml)",
    )
    parser.add_argument(
        "--window",
        type=positive_int,
        help="tokens per row and batch (default: the model's data.window; 20 without it)",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        help="stream: rows take the sentences in turn (bilm-tf's test); contiguous: each row "
        "reads one contiguous part of the text, as Kim et al.; sentence: one sentence per row "
        "from zero state (default: the model's data.mode; stream without it)",
    )
    add_device_argument(parser)
    parser.add_argument(
        "--cache-dir",
        help="where the prepared input is cached (default: $ELMO_TRAIN_CACHE or "
        "~/.cache/elmo-train)",
    )
    parser.add_argument(
        "--num-proc",
        type=positive_int,
        default=default_num_proc(),
        help="processes preparing the input (default: %(default)s)",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="DataLoader workers building batches beside the model (default: %(default)s)",
    )
    add_tokenizer_arguments(parser, train=False)  # the vocabulary's model, never a new one


def batching(args: argparse.Namespace, trained: dict) -> tuple[dict, str]:
    """Batch size, window and mode: the flags given, else how the model was validated in
    training (its config.yaml), else `FALLBACK_BATCHING`; and a line saying which."""
    from_model = {
        "batch_size": trained.get("eval_batch_size") or trained.get("batch_size"),
        "window": trained.get("window"),
        "mode": trained.get("mode"),
    }
    chosen, sources = {}, []
    for key, fallback in FALLBACK_BATCHING.items():
        given = getattr(args, key)
        flag = "--" + key.replace("_", "-")
        if given is not None:
            chosen[key], source = given, f"{flag} given"
        elif from_model[key] is not None:
            chosen[key], source = from_model[key], "as the model was validated"
        else:
            chosen[key], source = fallback, f"default; {CONFIG} does not say"
        sources.append(f"{key.replace('_', ' ')} {chosen[key]} ({source})")
    if chosen["mode"] == "sentence" and trained.get("max_sentence_tokens"):
        chosen["max_sentence_tokens"] = trained["max_sentence_tokens"]
    line = (
        f"evaluate: figures from batches of {', '.join(sources)}; other batchings score the "
        "words in other contexts and give other figures"
    )
    return chosen, line


def run(args: argparse.Namespace) -> None:
    if args.num_workers < 0:
        raise UserError(f"--num-workers must be 0 or more, got {args.num_workers}")
    device = torch.device(args.device)
    if args.json:
        check_writable(args.json, "--json")
    model_dir = Path(args.model)
    lm, model_vocab = load_model_dir(model_dir)
    trained = training_data(model_dir)
    if trained.get("tokenizer") == "sentencepiece" and args.tokenizer != "sentencepiece":
        raise UserError(
            f"{model_dir / CONFIG}: the model was trained on sentencepiece pieces; pass "
            "--tokenizer sentencepiece --sp-model FILE (the model's .model file)"
        )
    common = intersect([Vocabulary.load(v) for v in args.vocab]) if args.vocab else None
    eval_vocab = evaluation_vocabulary(model_vocab, common)
    if args.tokenizer == "sentencepiece" and args.sp_model is None:
        raise UserError("--tokenizer sentencepiece needs --sp-model FILE (the model's .model file)")
    normalize = args.normalize or trained.get("normalize")
    tokenizer = make_tokenizer(args.tokenizer, args.sp_model, normalize=normalize)
    files = resolve_inputs(args.input)
    store = prepare(
        files,
        model_vocab,
        tokenizer,
        args.cache_dir or default_cache_dir(),
        args.num_proc,
        max_line_bytes=args.max_line_bytes,
    )
    if eval_vocab.coarsened:
        print(
            f"evaluate: scoring over {len(eval_vocab.vocab):,} words of {eval_vocab.vocab.source}; "
            f"{eval_vocab.collapsed_words:,} other words of the model count as <UNK>"
        )
    chosen, batching_line = batching(args, trained)
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
        **chosen,
        device=device,
        num_workers=args.num_workers,
        progress=progress,
    )
    metrics = result.metrics()
    print(format_table(metrics))
    print(batching_line)
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
                **chosen,
                "normalize": normalize,
                "device": str(device),
            },
        )
        print(f"evaluate: wrote {args.json}")
