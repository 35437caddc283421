"""elmo-train's model directory (DESIGN.md): bilm-tf's files, the output layer, the vocabulary,
the resolved training config and a model card.

| file | content |
|---|---|
| `options.json`, `weights.hdf5` | bilm-tf's prediction options and weights (`formats.bilm_tf`) |
| `softmax.safetensors` | the output layer (bilm-tf never exported it), its config in the metadata |
| `vocab.txt` | the output vocabulary (`formats.vocab_file`) |
| `config.yaml`, `README.md` | the resolved training config; the `ModelCard` as Markdown |
"""

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from elmo_train.errors import UserError
from elmo_train.formats.bilm_tf import (
    OPTIONS,
    WEIGHTS,
    load_weights,
    read_options,
    save_weights,
    write_options,
)
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import LanguageModel
from elmo_train.model.config import SoftmaxConfig

SOFTMAX = "softmax.safetensors"
VOCAB = "vocab.txt"
CONFIG = "config.yaml"
CARD = "README.md"


@dataclass
class ModelCard:
    """How a model was made: written as the directory's README.md and kept in checkpoints."""

    name: str = "elmo-train biLM"
    data: str = "unknown"  # the training files or globs
    command: str = "unknown"  # the `elmo train` command line that made it
    init: str = "random"  # where the weights started (elmo_train.training.adapt)
    steps: int | None = None
    tokens_seen: int | None = None
    vocab_size: int | None = None
    # split -> metric -> value, full-softmax held-out perplexities
    perplexities: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain containers, so checkpoints load with `torch.load(weights_only=True)`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelCard":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_markdown(self) -> str:
        lines = [
            f"# {self.name}",
            "",
            "An ELMo-style biLM trained with elmo-train. `options.json` + `weights.hdf5` are in",
            "bilm-tf's format (AllenNLP's `Elmo(options_file, weight_file)` loads them);",
            "`softmax.safetensors` is the output layer, `vocab.txt` its vocabulary.",
            "",
            "| | |",
            "|---|---|",
            f"| training data | {self.data} |",
            f"| steps | {_or_unknown(self.steps)} |",
            f"| tokens seen | {_or_unknown(self.tokens_seen)} |",
            f"| vocabulary | {_or_unknown(self.vocab_size)} words |",
            f"| initialisation | {self.init} |",
        ]
        for split, values in self.perplexities.items():
            figures = ", ".join(f"{k} {v:.2f}" for k, v in values.items() if k.startswith("ppl"))
            lines.append(f"| {split} perplexity (full softmax) | {figures} |")
        lines += ["", "Command:", "", "```", self.command, "```", ""]
        return "\n".join(lines)


def _or_unknown(value) -> str:
    return "unknown" if value is None else str(value)


# --- softmax.safetensors ----------------------------------------------------------------------


def save_softmax(lm: LanguageModel, path: str | Path) -> None:
    state = {k: v.detach().float().cpu().contiguous() for k, v in lm.output.state_dict().items()}
    metadata = {
        "softmax": json.dumps(dataclasses.asdict(lm.config.softmax)),
        "vocab_size": str(lm.vocab_size),
    }
    save_file(state, str(path), metadata=metadata)


def read_softmax_config(path: str | Path) -> tuple[SoftmaxConfig, int]:
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "softmax" not in metadata:
        raise UserError(f"{path}: no softmax metadata; re-export the model with elmo export")
    return SoftmaxConfig(**json.loads(metadata["softmax"])), int(metadata["vocab_size"])


# --- the directory ----------------------------------------------------------------------------


def save_model_dir(
    lm: LanguageModel,
    vocab: Vocabulary,
    directory: str | Path,
    card: ModelCard | None = None,
    config_yaml: str = "",
) -> Path:
    """Write the model directory atomically: built beside it, then renamed into place."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    write_options(lm.config, staging / OPTIONS)
    save_weights(lm.bilm, staging / WEIGHTS)
    save_softmax(lm, staging / SOFTMAX)
    vocab.save(staging / VOCAB)
    (staging / CONFIG).write_text(config_yaml)
    (staging / CARD).write_text((card or ModelCard()).to_markdown())
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(staging, directory)
    return directory


def load_model_dir(directory: str | Path) -> tuple[LanguageModel, Vocabulary]:
    """A LanguageModel (biLM + output layer) and its vocabulary from a model directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: model directory not found; create one with elmo export")
    for name in (OPTIONS, WEIGHTS, SOFTMAX, VOCAB):
        if not (directory / name).is_file():
            raise UserError(f"{directory}: {name} is missing; re-export the model with elmo export")
    config = read_options(directory / OPTIONS)
    config.softmax, vocab_size = read_softmax_config(directory / SOFTMAX)
    vocab = Vocabulary.load(directory / VOCAB, require_unk=False)
    if len(vocab) != vocab_size:
        raise UserError(
            f"{directory / VOCAB}: {len(vocab)} words but the softmax has {vocab_size} rows; "
            "use the vocab.txt exported with this model"
        )
    lm = LanguageModel(config, vocab_size)
    load_weights(lm.bilm, directory / WEIGHTS)
    state = load_file(str(directory / SOFTMAX))
    missing, unexpected = lm.output.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(
            f"{directory / SOFTMAX}: tensors {sorted(missing)} missing, {sorted(unexpected)} "
            "unexpected for this output layer; re-export the model"
        )
    return lm.eval(), vocab
