"""Benchmark corpus preparation: vocabulary counting and `prepare`, in tokens/s.

    python scripts/bench_prepare.py                          # general/train.txt (3.3M tokens)
    python scripts/bench_prepare.py --repeat 1 10 --num-proc 1 2

For each corpus (`--corpus` repeated `--repeat` times into one file under `--work-dir`) and each
worker count, a fresh process times (1) `build_vocabulary` (one streaming counting pass) and
(2) `prepare` into an empty cache (read, tokenize, encode, order types, write the store), then
(3) `prepare` again (a cache hit). Imports are timed apart. Each row reports tokens/s (wall clock),
tokens per CPU-second of prepare (main process and workers together: unaffected by other load on
the machine), and the peak RSS of the main process and of its worker processes (imports included:
memory must not grow with the corpus).
The last lines extrapolate the best end-to-end rate to the 1B Word Benchmark (768,648,884 tokens).
"""

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "general" / "train.txt"
BILLION_WORD_TOKENS = 768_648_884


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time of this process and its finished workers: what the load of others cannot inflate."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )


def child(corpus: Path, num_proc: int, work: Path, min_count: int) -> dict:
    """One measurement in this (fresh) process; returns its numbers."""
    started = time.perf_counter()
    sys.path.insert(0, str(REPO))
    import datasets  # noqa: F401  (imported by the workers' path; timed with the imports)

    from elmo_train.data.files import SkipStats
    from elmo_train.data.prepare import prepare
    from elmo_train.data.vocab_builder import build_vocabulary

    imports = time.perf_counter() - started
    stats = SkipStats()
    started, cpu = time.perf_counter(), cpu_seconds()
    vocab, _ = build_vocabulary([corpus], None, min_count, num_proc=num_proc, stats=stats)
    vocab_s, vocab_cpu = time.perf_counter() - started, cpu_seconds() - cpu
    cache = work / f"cache-{num_proc}"
    shutil.rmtree(cache, ignore_errors=True)
    started, cpu = time.perf_counter(), cpu_seconds()
    store = prepare([corpus], vocab, None, cache, num_proc, say=None)
    prepare_s, prepare_cpu = time.perf_counter() - started, cpu_seconds() - cpu
    started = time.perf_counter()
    prepare([corpus], vocab, None, cache, num_proc, say=None)
    hit_s = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "tokens": store.n_tokens,
        "types": store.meta["counts"]["types"],
        "vocab": len(vocab),
        "imports_s": imports,
        "vocab_s": vocab_s,
        "prepare_s": prepare_s,
        "vocab_cpu_s": vocab_cpu,
        "prepare_cpu_s": prepare_cpu,
        "cache_hit_s": hit_s,
        "peak_rss_mb": peak_rss_mb(),
        "workers_peak_rss_mb": children,
    }


def make_corpus(source: Path, repeat: int, work: Path) -> Path:
    if repeat == 1:
        return source
    path = work / f"{source.stem}-x{repeat}.txt"
    if not path.is_file():
        data = source.read_bytes()
        with open(path, "wb") as f:
            for _ in range(repeat):
                f.write(data)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, nargs="+", default=[1])
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--min-count", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/elmo-bench-prepare"))
    parser.add_argument("--child", nargs=2, metavar=("CORPUS", "NUM_PROC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.child:
        result = child(Path(args.child[0]), int(args.child[1]), args.work_dir, args.min_count)
        print(json.dumps(result))
        return

    print(f"corpus {args.corpus} | min count {args.min_count} | work dir {args.work_dir}")
    header = (
        f"{'repeat':>6} {'procs':>5} {'tokens':>12} {'types':>9} {'import s':>8} "
        f"{'vocab tok/s':>12} {'prepare tok/s':>14} {'end-to-end tok/s':>17} {'cache hit s':>11} "
        f"{'main MB':>8} {'workers MB':>10} {'prepare tok/CPU-s':>17}"
    )
    print(header)
    best = None
    for repeat in args.repeat:
        corpus = make_corpus(args.corpus, repeat, args.work_dir)
        for num_proc in args.num_proc:
            command = [sys.executable, __file__, "--child", str(corpus), str(num_proc)]
            command += ["--work-dir", str(args.work_dir), "--min-count", str(args.min_count)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            r = json.loads(output.strip().splitlines()[-1])
            vocab_rate = r["tokens"] / r["vocab_s"]
            prepare_rate = r["tokens"] / r["prepare_s"]
            total_rate = r["tokens"] / (r["vocab_s"] + r["prepare_s"])
            print(
                f"{repeat:>6} {num_proc:>5} {r['tokens']:>12,} {r['types']:>9,} "
                f"{r['imports_s']:>8.2f} {vocab_rate:>12,.0f} {prepare_rate:>14,.0f} "
                f"{total_rate:>17,.0f} {r['cache_hit_s']:>11.3f} {r['peak_rss_mb']:>8.0f} "
                f"{r['workers_peak_rss_mb']:>10.0f} {r['tokens'] / r['prepare_cpu_s']:>17,.0f}"
            )
            if (
                best is None
                or r["tokens"] > best[0]["tokens"]
                or (r["tokens"] == best[0]["tokens"] and total_rate > best[3])
            ):
                best = (r, vocab_rate, prepare_rate, total_rate, num_proc)
    r, vocab_rate, prepare_rate, total_rate, num_proc = best
    print(
        f"\n1B Word Benchmark ({BILLION_WORD_TOKENS:,} tokens), extrapolated linearly from the "
        f"largest corpus above ({r['tokens']:,} tokens, {num_proc} worker(s)):"
    )
    print(f"  vocabulary pass {BILLION_WORD_TOKENS / vocab_rate / 60:6.1f} min")
    print(f"  prepare         {BILLION_WORD_TOKENS / prepare_rate / 60:6.1f} min")
    print(f"  both            {BILLION_WORD_TOKENS / total_rate / 60:6.1f} min")
    print(
        "  per-token work is linear; what grows with the corpus is the main process's type "
        "dictionary (a few million types: some hundred MB), and the disk: tokens.npy "
        f"{BILLION_WORD_TOKENS * 4 / 1e9:.1f} GB, up to three times that while building "
        "(worker rows and provisional ids are temporary files)"
    )


if __name__ == "__main__":
    main()
