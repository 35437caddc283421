"""Writing the model directory of DESIGN.md from a trained module or a Lightning checkpoint."""

import os
import shutil
import tempfile
from pathlib import Path

import torch

from elmo_train.errors import UserError
from elmo_train.model.bilm import LanguageModel
from elmo_train.vocab import Vocabulary
from elmo_train.weights import save_model_dir

CONFIG = "config.yaml"
CARD = "README.md"


def export_model(
    lm: LanguageModel, vocab: Vocabulary, directory: str | Path, card: dict, config_yaml: str = ""
) -> Path:
    """Writes the model directory atomically: built beside it, then renamed into place."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    save_model_dir(lm, vocab, staging)
    (staging / CONFIG).write_text(config_yaml)
    (staging / CARD).write_text(model_card(card))
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(staging, directory)
    return directory


def model_card(card: dict) -> str:
    ppl = card.get("perplexities") or {}
    lines = [
        f"# {card.get('name', 'elmo-train biLM')}",
        "",
        "An ELMo-style biLM trained with elmo-train. `options.json` + `weights.hdf5` are in",
        "bilm-tf's format (AllenNLP's `Elmo(options_file, weight_file)` loads them);",
        "`softmax.safetensors` is the output layer, `vocab.txt` its vocabulary.",
        "",
        "| | |",
        "|---|---|",
        f"| training data | {card.get('data', 'unknown')} |",
        f"| steps | {card.get('steps', 'unknown')} |",
        f"| tokens seen | {card.get('tokens_seen', 'unknown')} |",
        f"| vocabulary | {card.get('vocab_size', 'unknown')} words |",
        f"| initialisation | {card.get('init', 'random')} |",
    ]
    for split, values in ppl.items():
        figures = ", ".join(f"{k} {v:.2f}" for k, v in values.items() if k.startswith("ppl"))
        lines.append(f"| {split} perplexity (full softmax) | {figures} |")
    lines += ["", "Command:", "", "```", card.get("command", "unknown"), "```", ""]
    return "\n".join(lines)


def export_checkpoint(checkpoint_path: str | Path, directory: str | Path) -> Path:
    from elmo_train.lm_module import BiLMModule

    checkpoint_path = Path(checkpoint_path)
    if not checkpoint_path.is_file():
        raise UserError(
            f"{checkpoint_path}: checkpoint not found; pass a .ckpt written by elmo train"
        )
    try:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which one
        raise UserError(f"{checkpoint_path}: not a readable checkpoint ({error})") from None
    if "hyper_parameters" not in checkpoint or not checkpoint.get("vocab"):
        raise UserError(
            f"{checkpoint_path}: not an elmo-train checkpoint (no model config or vocab)"
        )
    module = BiLMModule(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    card = dict(checkpoint.get("card") or {})
    card.setdefault("steps", checkpoint.get("global_step"))
    config_yaml = card.pop("config_yaml", "")
    return export_model(
        module.lm, Vocabulary(checkpoint["vocab"], require_unk=False), directory, card, config_yaml
    )
