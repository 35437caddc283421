"""The typed schema of `elmo train`'s Hydra config and its registered presets.

Model and optimizer options are dataclasses registered in Hydra's ConfigStore, so
`model=elmo_small optimizer=sgd` picks a preset, `model.lstm.dim=512` is type-checked, and a
misspelled key is an error. YAML files under `configs/` only set values.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from elmo_train.model.config import PRESETS, BiLMConfig, preset
from elmo_train.training.optim import OptimizerConfig


@dataclass
class InitConfig:
    """Start from trained weights instead of random ones (domain adaptation)."""

    model: str | None = None  # an elmo-train model directory
    options: str | None = None  # released bilm-tf options.json ...
    weights: str | None = None  # ... and weights.hdf5 (no softmax: a fresh output layer)


@dataclass
class TrainConfig:
    model: BiLMConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    data: Any = MISSING
    trainer: Any = MISSING
    logger: Any = field(default_factory=dict)
    callbacks: Any = field(default_factory=dict)
    init: InitConfig = field(default_factory=InitConfig)
    run_name: str = MISSING
    run_dir: str = MISSING
    seed: int = 0
    epochs: float | None = None
    val_every: int | None = None
    checkpoint_every: int = 200
    resume: Any = False
    test: bool = True
    export: bool = True
    demo: bool = False


OPTIMIZERS = {
    "adagrad": OptimizerConfig(name="adagrad", lr=0.2, initial_accumulator_value=1.0),  # ELMo
    "sgd": OptimizerConfig(name="sgd", lr=1.0),  # Kim et al. 2016, halved on plateau
    "adamw": OptimizerConfig(name="adamw", lr=1e-3, warmup_steps=1000, weight_decay=0.01),
}


def config_dir() -> Path:
    """`configs/` of a source checkout, or the copy installed inside the package."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "configs", package / "configs"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no configs/ beside {package}; reinstall elmo-train")


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for name in PRESETS:
        store.store(group="model", name=name, node=preset(name))
    for name, optimizer in OPTIMIZERS.items():
        store.store(group="optimizer", name=name, node=optimizer)
    if not OmegaConf.has_resolver("builtin_corpus"):
        from elmo_train.demo.corpus import corpus_path

        OmegaConf.register_new_resolver("builtin_corpus", lambda split: str(corpus_path(split)))
