"""The typed schema of `elmo train`'s Hydra config and its registered presets.

Model, optimizer and data options are dataclasses registered in Hydra's ConfigStore, so
`model=elmo_small optimizer=sgd` picks a preset, `model.lstm.dim=512` is type-checked, and a
misspelled key is an error. YAML files under `configs/` only set values.
"""

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from elmo_train.data.files import NORMAL_FORMS
from elmo_train.data.stream import MODES
from elmo_train.data.tokenizer import TOKENIZERS
from elmo_train.demo.corpus import corpus_path
from elmo_train.errors import UserError
from elmo_train.formats.vocab_file import SPECIALS
from elmo_train.model.config import PRESETS, BiLMConfig, preset
from elmo_train.training.adapt import InitConfig
from elmo_train.training.compile import CompileConfig
from elmo_train.training.optim import OptimizerConfig


@dataclass
class DataConfig:
    """`data.*`: the corpus and how it becomes batches (`configs/data/*.yaml` only set values).

    Every check of these options is here: a bad value is one line naming its `data.` key.
    """

    train: Any = MISSING
    """Training text: a file, a glob or a list of them, one tokenized sentence per line."""
    valid: Any = None
    """Held-out text scored at every validation (file, glob or list); None: no validation."""
    test: Any = None
    """Test text scored after training (file, glob or list); None: none."""
    val_splits: list[str] = field(default_factory=lambda: ["valid"])
    """Splits scored at every validation: [valid], or [valid, test] to record the test curve."""
    vocab: str | None = None
    """A bilm-tf vocab.txt; None builds one from `train` (cached)."""
    vocab_min_count: int = 1
    """When building the vocabulary, drop rarer words (the 1B Word vocabulary used 3)."""
    vocab_max_size: int | None = None
    """When building the vocabulary, keep at most this many entries, specials included."""
    batch_size: int = 128
    """Rows per rank and training step."""
    window: int = 20
    """Tokens per row and step (the truncated-BPTT length)."""
    eval_batch_size: int | None = None
    """Rows of validation and test batches; None: `batch_size`."""
    mode: str = "stream"
    """stream (bilm-tf's packed rows) | contiguous (Kim et al.'s) | sentence (one per row)."""
    max_sentence_tokens: int = 400
    """Sentence mode: longer sentences are cut into pieces of this many tokens."""
    tokenizer: str = "whitespace"
    """whitespace (bilm-tf's `line.split()`) | sentencepiece."""
    sp_model: str | None = None
    """The sentencepiece .model; None trains one on `train` (cached)."""
    sp_vocab_size: int = 8000
    """Pieces of a newly trained sentencepiece model."""
    normalize: str | None = None
    """Unicode normal form of all text before tokenizing, also at embedding: None | NFC | NFKC."""
    shuffle: bool = True
    """Shuffle the training sentences every epoch (stream and sentence modes)."""
    shuffle_block: int = 65536
    """Sentences are shuffled within blocks of this many, and the blocks: O(block) memory."""
    seed: int = 0
    """Seed of the sentence order (the configs set it to the run's `seed`)."""
    num_workers: int = 2
    """DataLoader worker processes building batches beside the model."""
    prefetch_factor: int = 4
    """Batches each worker builds ahead."""
    num_proc: int = 2
    """Processes preparing the corpus store."""
    cache_dir: str | None = None
    """Cache of tokenizer models, vocabularies, stores; None: $ELMO_TRAIN_CACHE or ~/.cache."""

    def __post_init__(self) -> None:
        if self.train in (MISSING, None, "", []):
            raise UserError("data.train is not set: give the training text files or globs")
        choices = {"mode": MODES, "tokenizer": TOKENIZERS, "normalize": (None, *NORMAL_FORMS)}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                names = ", ".join(str(a).replace("None", "null") for a in allowed)
                raise UserError(f"data.{key}={getattr(self, key)}: use one of {names}")
        least = {"num_workers": 0, "seed": 0, "vocab_max_size": len(SPECIALS) + 1}
        counts = (
            "batch_size",
            "window",
            "eval_batch_size",
            "max_sentence_tokens",
            "sp_vocab_size",
            "vocab_min_count",
            "shuffle_block",
            "prefetch_factor",
            "num_proc",
        )
        for key in (*counts, *least):
            value, minimum = getattr(self, key), least.get(key, 1)
            if value is not None and value < minimum:
                raise UserError(f"data.{key}={value}: use {minimum} or more")
        splits = list(self.val_splits)
        if not splits or splits[0] != "valid" or not set(splits) <= {"valid", "test"}:
            raise UserError(f"data.val_splits={splits}: use [valid] or [valid, test] (valid first)")
        if "test" in splits and not self.test:
            raise UserError("data.val_splits includes test but data.test is not set")
        if self.valid == str(corpus_path("valid")) and not self.builtin:
            raise UserError(
                f"data.train={self.train} replaces the built-in corpus, but data.valid is still "
                "the built-in demo's: add data=text to train on your own files (with "
                "data.valid=FILE for held-out perplexity)"
            )

    @property
    def builtin(self) -> bool:
        """Training on the corpus built into the package (the demo)."""
        return self.train == str(corpus_path("train"))

    @classmethod
    def from_config(cls, node: DictConfig) -> "DataConfig":
        """The checked options of a composed `data` node. Hydra lets `+data.KEY=...` add a key
        to a typed node; each such key is an error here, naming the nearest real one."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in node:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" (did you mean data.{close[0]}?)" if close else ""
                raise UserError(
                    f"data.{key} is not a data option{hint}: the options are DataConfig's "
                    "fields in elmo_train/config.py"
                )
        return OmegaConf.to_object(node)


@dataclass
class TrainConfig:
    """`elmo train`'s whole config (`configs/train.yaml` sets the values).

    Every check of the top-level keys is in `__post_init__`: a bad value is one line naming it.
    """

    model: BiLMConfig = MISSING
    """The network: a preset (`model=elmo_small`) and its options (`model.lstm.dim=...`)."""
    optimizer: OptimizerConfig = MISSING
    """The optimiser and its schedule: adagrad (ELMo), sgd (Kim et al.), adamw."""
    data: DataConfig = MISSING
    """The corpus and how it becomes batches."""
    trainer: dict[str, Any] = MISSING
    """Arguments of Lightning's `Trainer` (`configs/trainer/*.yaml`; `+trainer.KEY=...` adds one)."""
    logger: dict[str, Any] = field(default_factory=dict)
    """Lightning loggers by name, each instantiated from its `_target_`; null switches one off."""
    callbacks: dict[str, Any] = field(default_factory=dict)
    """Lightning callbacks by name, each instantiated from its `_target_`; null switches one off."""
    init: InitConfig = field(default_factory=InitConfig)
    """Start from pretrained weights (domain adaptation) instead of random ones."""
    run_name: str = MISSING
    """The run's name: its directory is runs/<run_name> unless `run_dir` says otherwise."""
    run_dir: str = MISSING
    """Where checkpoints, logs and the model directory go (Hydra's output directory)."""
    seed: int = 0
    """Seed of the initial weights, dropout and sampled negatives."""
    epochs: float | None = None
    """Training length in epochs of the training corpus; `trainer.max_steps` wins if set."""
    val_every: int | None = None
    """Validate every N steps; None: once per epoch."""
    checkpoint_every: int = 200
    """Steps between checkpoints; the last step is always saved too."""
    resume: str = "false"
    """false | true (continue run_dir from its newest checkpoint) | auto (if it has one) | PATH."""
    skip_nonfinite_steps: int = 0
    """Steps with a non-finite loss or gradient norm skipped (counted) before training stops."""
    test: bool = True
    """Score the test split (if `data.test` is set) after training."""
    export: bool = True
    """Write the model directory to `run_dir`/model after training."""
    demo: bool = False
    """Print the contextual-embedding demonstration (built-in corpus only)."""
    compile: CompileConfig = field(default_factory=CompileConfig)
    """torch.compile or CUDA graphs of the biLM (training/compile.py); eager if that fails, saying why."""
    threads: str = "auto"
    """Intra-op CPU threads: auto (OMP_NUM_THREADS if set, else the CPUs this process may use
    minus DataLoader workers; elmo_train/runtime.py) or a number."""

    def __post_init__(self) -> None:
        if self.resume.lower() in ("true", "false", "auto"):
            self.resume = self.resume.lower()
        max_steps = self.trainer.get("max_steps")
        if self.epochs is None and (max_steps is None or max_steps < 0):
            raise UserError("set epochs=N or trainer.max_steps=N: the training length is unknown")
        if self.epochs is not None and self.epochs <= 0:
            raise UserError(f"epochs={self.epochs}: use a positive number of epochs")
        for key, least in (("val_every", 1), ("checkpoint_every", 1), ("skip_nonfinite_steps", 0)):
            value = getattr(self, key)
            if value is not None and value < least:
                raise UserError(f"{key}={value}: use {least} or more")


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
        OmegaConf.register_new_resolver("builtin_corpus", lambda split: str(corpus_path(split)))
