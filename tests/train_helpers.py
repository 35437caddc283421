"""Running `elmo train` in tests: in-process through the Compose API, or as a real subprocess."""

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from elmo_train.config import config_dir
from elmo_train.demo.corpus import corpus_path


def tiny_corpus(directory: Path, train_lines: int = 300, valid_lines: int = 40) -> dict[str, Path]:
    """A slice of the built-in corpus: train, valid and test files."""
    directory.mkdir(parents=True, exist_ok=True)
    train = corpus_path("train").read_text().splitlines()
    valid = corpus_path("valid").read_text().splitlines()
    files = {
        "train": train[:train_lines],
        "valid": valid[:valid_lines],
        "test": valid[valid_lines : 2 * valid_lines],
    }
    paths = {}
    for split, lines in files.items():
        paths[split] = directory / f"{split}.txt"
        paths[split].write_text("\n".join(lines) + "\n")
    return paths


def fast_overrides(
    corpus: dict[str, Path], run_dir: Path, cache: Path, steps: int = 2
) -> list[str]:
    return [
        f"data.train={corpus['train']}",
        f"data.valid={corpus['valid']}",
        f"data.test={corpus['test']}",
        f"data.cache_dir={cache}",
        "data.batch_size=4",
        "data.window=6",
        "data.num_workers=0",
        f"trainer.max_steps={steps}",
        "trainer.log_every_n_steps=1",
        "trainer.enable_model_summary=false",
        f"run_dir={run_dir}",
        "demo=false",
    ]


def compose_train_config(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):  # as @hydra.main hands it to the task: without the hydra node
        del cfg["hydra"]
    return cfg


def train_subprocess(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "elmo_train", "train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )
