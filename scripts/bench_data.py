"""Benchmark the training batches: tokens/s out of the DataModule, and peak RSS while streaming.

    python scripts/bench_data.py                      # general/train.txt and a 10x copy
    python scripts/bench_data.py --batches 500 --workers 0 1

Prepares (or reuses) the corpus store of `--corpus` and of a file that repeats it `--repeat`
times, both under `--work-dir`, then measures each (corpus, workers) pair in a fresh process:
batches/s and tokens/s (B*T target positions per batch) over `--batches` batches after the
first, the time to resume at one epoch of the large corpus, and peak RSS (VmHWM) of the main
process and of the DataLoader workers. Memory must not grow with the corpus: compare the rows.
"""

import argparse
import gc
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/data/general/train.txt"


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(args: argparse.Namespace) -> dict:
    """One configuration, in this (fresh) process."""
    from elmo_train.config import DataConfig
    from elmo_train.data.datamodule import ElmoDataModule

    (workers,) = args.workers
    config = DataConfig(
        train=args.corpus,
        vocab=args.vocab,
        batch_size=args.batch_size,
        window=args.window,
        num_workers=workers,
        cache_dir=args.cache_dir,
        num_proc=1,
    )
    dm = ElmoDataModule(config)
    dm.setup("fit")
    dm.load_state_dict({"batches_consumed": args.start_step})
    started = time.perf_counter()
    batches = iter(dm.train_dataloader())
    next(batches)  # worker start-up, and the simulation up to the start step
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.batches):
        next(batches)
    seconds = time.perf_counter() - started
    del batches
    gc.collect()  # shuts the workers down, so their peak RSS is in RUSAGE_CHILDREN
    store = dm.stores["train"]
    return {
        "sentences": store.n_sentences,
        "tokens": store.n_tokens,
        "workers": workers,
        "start_step": args.start_step,
        "first_batch_s": round(first, 3),
        "batches_per_s": round(args.batches / seconds, 1),
        "tokens_per_s": round(args.batches * args.batch_size * args.window / seconds),
        "peak_rss_main_mb": round(peak_rss_mb(), 1),
        "peak_rss_worker_mb": (
            round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
            if workers
            else "-"
        ),
    }


def run(corpus: str, workers: int, batches: int, common: list[str], start_step: int = 0) -> dict:
    """`measure` in a fresh process, so earlier runs and preparation do not count in its RSS."""
    flags = ["--corpus", corpus, "--workers", str(workers), "--batches", str(batches)]
    out = subprocess.run(
        [sys.executable, __file__, "--measure", *flags, "--start-step", str(start_step), *common],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--work-dir", default="/tmp/elmo-bench-data")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--batches", type=int, default=3000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--vocab", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--start-step", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return

    from elmo_train.data.prepare import prepare
    from elmo_train.data.tokenizer import make_tokenizer
    from elmo_train.data.vocab_builder import build_vocabulary

    work = Path(args.work_dir)
    cache = work / "cache"
    work.mkdir(parents=True, exist_ok=True)
    vocab_path = work / "vocab.txt"
    if not vocab_path.is_file():
        vocab, _ = build_vocabulary([args.corpus], num_proc=2)
        vocab.save(vocab_path)
    large = work / f"train_x{args.repeat}.txt"
    if not large.is_file():
        with open(large, "wb") as out:
            for _ in range(args.repeat):
                with open(args.corpus, "rb") as f:
                    shutil.copyfileobj(f, out)
    corpora = {"1x": args.corpus, f"{args.repeat}x": str(large)}
    for name, path in corpora.items():
        started = time.perf_counter()
        store = prepare([path], vocab_path, make_tokenizer("whitespace"), cache, 2, say=None)
        print(
            f"store {name}: {store.n_sentences:,} sentences, {store.n_tokens:,} tokens "
            f"(prepared or reused in {time.perf_counter() - started:.1f} s)"
        )

    common = ["--vocab", str(vocab_path), "--cache-dir", str(cache)]
    common += ["--batch-size", str(args.batch_size), "--window", str(args.window)]
    print(f"B={args.batch_size} T={args.window}, {args.batches} batches after the first")
    print(
        f"{'corpus':>6} {'workers':>7} {'tokens/s':>11} {'batches/s':>9} {'first s':>7} "
        f"{'RSS main MB':>11} {'RSS worker MB':>13}"
    )
    for name, path in corpora.items():
        for workers in args.workers:
            r = run(path, workers, args.batches, common)
            print(
                f"{name:>6} {workers:>7} {r['tokens_per_s']:>11,} {r['batches_per_s']:>9} "
                f"{r['first_batch_s']:>7} {r['peak_rss_main_mb']:>11} "
                f"{r['peak_rss_worker_mb']:>13}"
            )
    # resume cost: the large corpus from one epoch in (assignment simulated, not materialised)
    steps = (r["tokens"] + r["sentences"]) // (args.batch_size * args.window)
    r = run(str(large), 0, 100, common, start_step=steps)
    print(
        f"resume at step {steps:,} of the {args.repeat}x corpus: first batch after "
        f"{r['first_batch_s']} s (peak RSS {r['peak_rss_main_mb']} MB)"
    )


if __name__ == "__main__":
    main()
