"""Training throughput of `elmo train` itself: tokens/s as its own logger records them.

Runs `elmo train` for a fixed number of steps per configuration and reports the median of the
logged `perf/tokens_per_sec` over the steps after a warm-up, plus the projected time for the
paper's 10 epochs over the 1B Word Benchmark's 768,648,884 tokens.

    python scripts/bench_train.py                       # every run below
    python scripts/bench_train.py --only elmo_small --steps 40 --extra trainer=gpu
"""

import argparse
import csv
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

PAPER_TOKENS = 10 * 768_648_884
DATA = Path(os.environ.get("ELMO_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
RUNS = {
    "tiny": ["model=tiny"],  # the built-in corpus, batch 32 x 20
    "kim_small": ["experiment=kim_ptb_small", "trainer=cpu"],  # PTB, batch 20 x 35, full softmax
    "kim_large": ["experiment=kim_ptb_large", "trainer=cpu"],
    "elmo_small": [  # the paper's recipe at ELMo-small size on the general corpus
        "experiment=elmo_small", "trainer=cpu", f"data.train={DATA}/general/train.txt",
        f"data.valid={DATA}/general/valid.txt", "data.vocab_min_count=3",
    ],
}  # fmt: skip


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run(name: str, steps: int, extra: list[str], workdir: Path) -> list[float]:
    run_dir = workdir / name
    command = [
        sys.executable, "-m", "elmo_train", "train", *RUNS[name], *extra,
        f"trainer.max_steps={steps}", "trainer.log_every_n_steps=1", f"val_every={steps + 1}",
        "export=false", "test=false", "demo=false", f"run_dir={run_dir}", "callbacks.progress_bar=null",
    ]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with open(run_dir / "logs" / "metrics.csv") as f:
        return [
            float(r["perf/tokens_per_sec"])
            for r in csv.DictReader(f)
            if r.get("perf/tokens_per_sec")
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10, help="logged steps to ignore")
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides")
    args = parser.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_name()
    print(f"# {datetime.date.today()}  {device}  {os.cpu_count()} cores  torch {torch.__version__}")
    print("| config | steps | median tokens/s | 10 epochs of 1B Word (768.6M tokens) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.only:
            rates = run(name, args.steps, args.extra, Path(workdir))[args.warmup :]
            median = statistics.median(rates)
            days = PAPER_TOKENS / median / 86400
            print(f"| {name} | {args.steps} | {median:,.0f} | {days:,.1f} days |", flush=True)


if __name__ == "__main__":
    main()
