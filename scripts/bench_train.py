"""Training throughput of `elmo train` itself: tokens/s as its own logger records them.

Runs `elmo train` for a fixed number of steps per configuration and reports the median of the
logged `perf/tokens_per_sec` over the steps after a warm-up, ms per step, peak memory, MFU
(on a GPU with a known peak) and the projected time for the paper's 10 epochs over the 1B Word
Benchmark's 768,648,884 tokens.

    python scripts/bench_train.py                       # every run below
    python scripts/bench_train.py --only elmo_small --steps 40 --extra trainer=gpu
    python scripts/bench_train.py --only elmo_original --batch-sizes 128 384 --json train.json

`elmo_original` is the paper's recipe (`experiment=elmo_original`: bf16 on a GPU) on a
synthetic corpus made here with the 1B Word vocabulary's size (793,471 words, Zipf-distributed),
so it needs nothing but the project's own install.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from elmo_train.reference.workload import macs_per_token, peak_tflops, write_synthetic_corpus
from elmo_train.training.module import model_config_from_dict

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
    "elmo_original": [  # the paper's model and recipe on a synthetic 1B-Word-sized vocabulary
        "experiment=elmo_original", "data.train={synthetic}/train.txt",
        "data.valid={synthetic}/valid.txt", "data.vocab={synthetic}/vocab.txt",
    ],
}  # fmt: skip


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run(overrides: list[str], steps: int, run_dir: Path) -> tuple[list[dict], dict]:
    """The logged metrics rows and the resolved config of one `elmo train` run."""
    command = [
        sys.executable, "-m", "elmo_train", "train", *overrides,
        f"trainer.max_steps={steps}", "trainer.log_every_n_steps=1", f"val_every={steps + 1}",
        "export=false", "test=false", "demo=false", f"run_dir={run_dir}", "callbacks.progress_bar=null",
    ]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with open(run_dir / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return rows, yaml.safe_load((run_dir / "logs" / "hparams.yaml").read_text())


def summarise(name: str, rows: list[dict], config: dict, warmup: int, peak: float | None) -> dict:
    rates = [float(r["perf/tokens_per_sec"]) for r in rows if r.get("perf/tokens_per_sec")]
    rate = statistics.median(rates[warmup:])
    memory = [
        float(r[key]) for r in rows for key in ("perf/peak_memory_gb", "perf/peak_rss_gb") if r.get(key)
    ]  # fmt: skip
    data, model = config["data"], model_config_from_dict(config["model"])
    positions = data["batch_size"] * data["window"]  # per step and device, one direction
    negatives = model.softmax.n_negatives if model.softmax.kind == "sampled" else None
    flops_per_token = 6 * sum(macs_per_token(model, negatives).values())  # fwd + bwd
    return {
        "config": name,
        "batch": f"{data['batch_size']}x{data['window']}",
        "tokens_per_s": rate,
        "ms_per_step": 1e3 * positions / rate,
        "peak_memory_gb": max(memory, default=float("nan")),
        "mfu": rate * flops_per_token / (peak * 1e12) if peak else None,
        "days_10_epochs": PAPER_TOKENS / rate / 86400,
        "steps_timed": len(rates) - warmup,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10, help="logged steps to ignore")
    parser.add_argument("--batch-sizes", nargs="*", type=int, default=[], help="rows per device")
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides")
    parser.add_argument("--vocab-size", type=int, default=793_471, help="synthetic vocabulary")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if gpu else cpu_name()
    peak = peak_tflops(device, "bf16") if gpu else None  # `trainer=gpu` trains in bf16-mixed
    print(f"# {datetime.date.today()}  {device}  {os.cpu_count()} cores  torch {torch.__version__}")
    print(
        "| config | batch | tokens/s | ms/step | peak memory GB | MFU (bf16) | 10 epochs of 1B Word |"
    )
    print("|---|---|---|---|---|---|---|")
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        synthetic = Path(workdir) / "synthetic"
        if "elmo_original" in args.only:
            synthetic.mkdir()
            n_tokens = (args.steps + 1) * max([*args.batch_sizes, 128]) * 20 * 3 // 2
            write_synthetic_corpus(synthetic, args.vocab_size, n_tokens, np.random.default_rng(0))
        for name in args.only:
            for batch_size in args.batch_sizes or [None]:
                overrides = [o.format(synthetic=synthetic) for o in RUNS[name]] + args.extra
                if batch_size is not None:
                    overrides.append(f"data.batch_size={batch_size}")
                run_dir = Path(workdir) / f"{name}-{batch_size}"
                rows, config = run(overrides, args.steps, run_dir)
                result = summarise(name, rows, config, args.warmup, peak)
                results.append(result)
                mfu = f"{100 * result['mfu']:.1f} %" if result["mfu"] is not None else "–"
                print(
                    f"| {name} | {result['batch']} | {result['tokens_per_s']:,.0f} | "
                    f"{result['ms_per_step']:.1f} | {result['peak_memory_gb']:.1f} | {mfu} | "
                    f"{result['days_10_epochs']:,.1f} days |",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps({"device": device, "rows": results}, indent=1))


if __name__ == "__main__":
    main()
