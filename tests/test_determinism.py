"""Same inputs, same seed, same thread count: `elmo train` logs bit-identical losses.

Issue #16: the default run, started twice, gave ppl 24.95 and 24.87 on a loaded 2-core machine.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import tiny_corpus, train_subprocess

STEPS = 30


def _logged(run_dir: Path) -> dict[int, dict[str, str]]:
    """Every metric but the timings, as logged (exact decimal text), per step."""
    steps: dict[int, dict[str, str]] = {}
    with open(run_dir / "logs" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            values = {k: v for k, v in row.items() if v and not k.startswith("perf/")}
            steps.setdefault(int(row["step"]), {}).update(values)
    return steps


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
@pytest.mark.slow  # two real training runs of 30 steps on two shared CPUs
def test_the_same_run_twice_logs_the_same_losses_bit_for_bit(tmp_path, monkeypatch):
    corpus = tiny_corpus(tmp_path / "corpus")
    # Two threads: the default run's, where parallel kernels may sum in a varying order (one
    # thread hides it; conftest sets one). A busy process on the same two CPUs, as on a loaded
    # laptop, makes the threads' timing vary from run to run.
    cpus = sorted(os.sched_getaffinity(0))[:2]
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("ELMO_TRAIN_CACHE", str(tmp_path / "cache"))
    args = [
        "data=text",
        f"data.train={corpus['train']}",
        f"data.valid={corpus['valid']}",
        # The default run's batch: 32 x 20 tokens, so a (tokens, dim) gather is big enough
        # (>= 32768 elements) for torch to split it over the threads.
        "data.batch_size=32",
        "data.window=20",
        "data.num_workers=1",
        f"trainer.max_steps={STEPS}",
        "trainer.log_every_n_steps=1",
        "val_every=15",
        "callbacks.progress_bar=null",
        "test=false",
        "export=false",
        "demo=false",
    ]

    def pinned() -> None:
        os.sched_setaffinity(0, cpus)

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=pinned)
    try:
        logs = []
        for name in ("a", "b"):
            run = train_subprocess(
                [*args, f"run_dir={tmp_path / name}"], tmp_path, preexec_fn=pinned
            )
            output = run.communicate(timeout=900)[0]
            assert run.returncode == 0, output
            logs.append(_logged(tmp_path / name))
    finally:
        busy.kill()
        busy.wait()
    first, second = logs
    assert sorted(k for k, v in first.items() if "train/loss" in v) == list(range(STEPS))
    assert any("val/ppl" in v for v in first.values())
    differing = [step for step in sorted(first) if first[step] != second.get(step)]
    assert not differing, (
        f"from step {differing[0]}: {first[differing[0]]} vs {second.get(differing[0])}"
    )
