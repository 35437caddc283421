"""Throughput of `elmo embed` and `elmo evaluate` for an exported model of a given preset.

Builds a model directory with random weights of the preset (throughput does not depend on the
weights), then times the two commands on the first `--lines` lines of a text file.

    python scripts/bench_use.py --preset elmo_small --input ../shared/data/biomed/valid.txt --lines 1000
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from elmo_train.data.vocab_builder import build_vocabulary
from elmo_train.formats.model_dir import save_model_dir
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import preset


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="elmo_small")
    parser.add_argument("--input", required=True)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        lines = Path(args.input).read_text(encoding="utf-8").splitlines()[: args.lines]
        text = work / "input.txt"
        text.write_text("\n".join(lines) + "\n", encoding="utf-8")
        vocab, _ = build_vocabulary([text])
        config = preset(args.preset)
        config.softmax.kind = "sampled"
        save_model_dir(LanguageModel(config, len(vocab)), vocab, work / "model")
        tokens = sum(len(line.split()) for line in lines)
        elmo = [sys.executable, "-m", "elmo_train"]
        embed = timed(
            [
                *elmo,
                "embed",
                "--model",
                str(work / "model"),
                "--input",
                str(text),
                "--output",
                str(work / "out.hdf5"),
                "--batch-size",
                str(args.batch_size),
            ]
        )
        timed([*elmo, "evaluate", "--model", str(work / "model"), "--input", str(text),
               "--batch-size", str(args.batch_size), "--json", str(work / "eval.json"),
               "--cache-dir", str(work / "cache")])  # fmt: skip
        evaluated = json.loads((work / "eval.json").read_text())
    device = "cuda" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    print(f"# {datetime.date.today()} {args.preset} {device} torch {torch.__version__}")
    print("| command | tokens | tokens/s |\n|---|---|---|")
    print(f"| elmo embed (wall, process start included) | {tokens:,} | {tokens / embed:,.0f} |")
    print(
        f"| elmo evaluate (its own timing) | {evaluated['tokens']:,} | {evaluated['tokens_per_sec']:,.0f} |"
    )


if __name__ == "__main__":
    main()
