"""Checkpoint files: written atomically, found again to resume, exported to a model directory."""

import os
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from elmo_train.errors import UserError
from elmo_train.formats.model_dir import ModelCard, save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.training.module import BiLMModule


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write beside the target and rename: a crash mid-write leaves the previous file intact."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)


def resume_checkpoint(resume, run_dir: Path) -> str | None:
    """`resume`: false, true (must exist), auto (if one exists) or a checkpoint path."""
    if resume in (False, None, "false"):
        return None
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume in (True, "true", "auto"):
        if last.is_file():
            return str(last)
        if resume == "auto":
            return None
        raise UserError(
            f"{last}: no checkpoint to resume; pass the run_name of an earlier run or "
            "resume=path/to.ckpt"
        )
    if not Path(resume).is_file():
        raise UserError(f"{resume}: checkpoint not found (resume=...); pass an existing .ckpt")
    return str(resume)


def export_checkpoint(checkpoint_path: str | Path, directory: str | Path) -> Path:
    """The model directory of a checkpoint written by `elmo train`."""
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
    card = ModelCard.from_dict(checkpoint.get("card") or {})
    if card.steps is None:
        card.steps = checkpoint.get("global_step")
    vocab = Vocabulary(checkpoint["vocab"], require_unk=False)
    return save_model_dir(module.lm, vocab, directory, card, checkpoint.get("config_yaml", ""))
