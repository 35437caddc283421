"""elmo-train's model directory (DESIGN.md): bilm-tf's files, the output layer, the vocabulary,
the resolved training config and a model card.

| file | content |
|---|---|
| `options.json`, `weights.hdf5` | bilm-tf's prediction options and weights (`formats.bilm_tf`) |
| `softmax.safetensors` | the output layer (bilm-tf never exported it), its config in the metadata |
| `vocab.txt` | the output vocabulary (`formats.vocab_file`) |
| `config.yaml`, `README.md` | the resolved training config; the `ModelCard` as Markdown |
| `checksums.sha256` | sha256 of the four model files (`sha256sum -c` reads it), verified on load |

Every file is written with the user's umask, and every load checks the weights: finite tensors
always, and the checksums where the directory has them (released bilm-tf files have none).
"""

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from elmo_train.errors import UserError
from elmo_train.formats.atomic import atomic_directory, file_sha256
from elmo_train.formats.bilm_tf import (
    OPTIONS,
    WEIGHTS,
    load_bilm,
    load_weights,
    read_options,
    save_weights,
    write_options,
)
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.model.bilm import BiLM, LanguageModel
from elmo_train.model.config import SoftmaxConfig

SOFTMAX = "softmax.safetensors"
VOCAB = "vocab.txt"
CONFIG = "config.yaml"
CARD = "README.md"
CHECKSUMS = "checksums.sha256"
MODEL_FILES = (OPTIONS, WEIGHTS, SOFTMAX, VOCAB)  # what the checksums cover


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
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise UserError(
            f"{path}: not a readable safetensors file ({error}); re-export the model"
        ) from None
    if "softmax" not in metadata:
        raise UserError(f"{path}: no softmax metadata; re-export the model with elmo export")
    return SoftmaxConfig(**json.loads(metadata["softmax"])), int(metadata["vocab_size"])


def load_softmax(lm: LanguageModel, path: Path) -> None:
    """The output layer's tensors from `path` into `lm`, checked: names, finite values."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise UserError(
            f"{path}: not a readable safetensors file ({error}); re-export the model"
        ) from None
    for name, tensor in state.items():
        if not torch.isfinite(tensor).all():
            raise UserError(
                f"{path}: tensor {name!r} holds NaN or infinite values; the file is corrupt: "
                "re-export the model (elmo export) or restore the file"
            )
    missing, unexpected = lm.output.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(
            f"{path}: tensors {sorted(missing)} missing, {sorted(unexpected)} unexpected for "
            "this output layer; re-export the model"
        )


# --- checksums.sha256 -------------------------------------------------------------------------


def write_checksums(directory: Path) -> None:
    """`sha256  name` lines (`sha256sum`'s format) for the model files of `directory`."""
    lines = [f"{file_sha256(directory / name)}  {name}\n" for name in MODEL_FILES]
    (directory / CHECKSUMS).write_text("".join(lines), encoding="utf-8")


def verify_checksums(directory: Path, names: Iterable[str]) -> None:
    """Check `names` against the directory's `checksums.sha256`, if it has one."""
    manifest = directory / CHECKSUMS
    if not manifest.is_file():
        return
    expected = {}
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise UserError(
                f"{manifest} line {number} is not 'sha256  name': restore the file, or delete it "
                "to load without checksums"
            )
        expected[name] = digest
    for name in names:
        if name in expected and file_sha256(directory / name) != expected[name]:
            raise UserError(
                f"{directory / name}: its sha256 differs from {manifest}, so the file was damaged "
                "or changed after export: re-export the model (elmo export) or restore the file"
            )


# --- the config it was trained with -------------------------------------------------------------


def training_data(directory: str | Path) -> dict:
    """The `data.*` options the model was trained with (its config.yaml); {} where unrecorded."""
    path = Path(directory) / CONFIG
    if not path.is_file():
        return {}
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        problem = str(error).splitlines()[0]
        raise UserError(f"{path}: not readable YAML ({problem}); restore it from the run") from None
    data = config.get("data") if isinstance(config, dict) else None
    return data if isinstance(data, dict) else {}


# --- the directory ----------------------------------------------------------------------------


def save_model_dir(
    lm: LanguageModel,
    vocab: Vocabulary,
    directory: str | Path,
    card: ModelCard | None = None,
    config_yaml: str = "",
) -> Path:
    """Write the model directory atomically: built beside it, then renamed into place.

    An existing model directory there is replaced; anything else there is an error.
    """
    with atomic_directory(directory, OPTIONS, "model directory") as staging:
        write_options(lm.config, staging / OPTIONS)
        save_weights(lm.bilm, staging / WEIGHTS)
        save_softmax(lm, staging / SOFTMAX)
        vocab.save(staging / VOCAB)
        (staging / CONFIG).write_text(config_yaml, encoding="utf-8")
        (staging / CARD).write_text((card or ModelCard()).to_markdown(), encoding="utf-8")
        write_checksums(staging)
    return Path(directory)


def _require(directory: Path, names: Iterable[str], why: str = "") -> None:
    if not directory.is_dir():
        raise UserError(f"{directory}: model directory not found; create one with elmo export")
    for name in names:
        if not (directory / name).is_file():
            raise UserError(
                f"{directory}: {name} is missing{why}; re-export the model with elmo export"
            )


def load_bilm_dir(directory: str | Path) -> BiLM:
    """The biLM of a model directory, without its output layer (embedding needs none)."""
    directory = Path(directory)
    _require(directory, (OPTIONS, WEIGHTS))
    verify_checksums(directory, (OPTIONS, WEIGHTS))
    return load_bilm(directory / OPTIONS, directory / WEIGHTS)


def load_model_dir(directory: str | Path) -> tuple[LanguageModel, Vocabulary]:
    """A LanguageModel (biLM + output layer) and its vocabulary from a model directory."""
    directory = Path(directory)
    _require(directory, MODEL_FILES, " (scoring text needs the output layer and its vocabulary)")
    verify_checksums(directory, MODEL_FILES)
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
    load_softmax(lm, directory / SOFTMAX)
    return lm.eval(), vocab
