"""Checkpoint files: written atomically with a checksum, verified and found again to resume,
exported to a model directory.

Beside each `X.ckpt` lies `X.ckpt.sha256` (`sha256sum -c` reads it). Every checkpoint read here is
verified before use: its checksum where it has one, that it loads, and that its tensors are
finite. Resuming takes the newest checkpoint of the run by training step, whatever its name.
"""

import contextlib
import hashlib
import logging
import math
import os
import re
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from elmo_train.errors import UserError
from elmo_train.formats.atomic import file_sha256
from elmo_train.formats.model_dir import ModelCard, save_model_dir
from elmo_train.formats.vocab_file import Vocabulary
from elmo_train.training.module import BiLMModule
from elmo_train.training.nonfinite import all_finite

log = logging.getLogger(__name__)


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


class _Hashing:
    """A file that hashes what is written to it (torch.save writes a checkpoint in order)."""

    def __init__(self, file) -> None:
        self.file = file
        self.digest = hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write beside the target and rename: a crash mid-write leaves the previous file intact.

    The checkpoint is renamed first, then its checksum; a reader that finds the checksum stale
    accepts the one still waiting beside it (a crash between the two renames).
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial, sidecar = _partial(path), _partial(checksum_path(path))
        try:
            with open(partial, "wb") as f:  # created with the user's umask
                hashing = _Hashing(f)
                torch.save(checkpoint, hashing)
                f.flush()
                os.fsync(f.fileno())
            sidecar.write_text(f"{hashing.digest.hexdigest()}  {path.name}\n")
        except BaseException:  # an error or a second Ctrl-C mid-write: no stray partial files
            for leftover in (partial, sidecar):
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)
            raise
        os.replace(partial, path)
        os.replace(sidecar, checksum_path(path))

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        checksum_path(Path(path)).unlink(missing_ok=True)


class DamagedCheckpoint(UserError):
    """A checkpoint that must not be used: `reason` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(
            f"{path}: {reason}: use another checkpoint (resume=auto resumes from the newest "
            "intact one)"
        )


def verify_checkpoint(path: str | Path) -> dict:
    """The checkpoint at `path`, loaded on CPU, or one line saying why it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; pass a .ckpt written by elmo train")
    # The checksum, and the one a crash may have left waiting to replace it.
    sums = [checksum_path(path), _partial(checksum_path(path))]
    expected = [(p.read_text().split() or [""])[0] for p in sums if p.is_file()]
    if expected:
        actual = file_sha256(path)
        if actual not in expected:
            raise DamagedCheckpoint(path, f"damaged: its sha256 differs from {sums[0].name}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch's message is about zip internals
        raise DamagedCheckpoint(path, "it does not load (truncated or damaged)") from None
    if "hyper_parameters" not in checkpoint or "state_dict" not in checkpoint:
        raise UserError(f"{path}: not an elmo-train checkpoint (no model config or weights)")
    # The weights, the optimizer's state and the carried LSTM state (not the callbacks', where
    # inf is a normal "no best score yet").
    state = [
        checkpoint[k] for k in ("state_dict", "optimizer_states", "lstm_state") if k in checkpoint
    ]
    if not all_finite(_tensors(state)):
        raise DamagedCheckpoint(path, "its weights or optimizer state hold NaN or inf")
    return checkpoint


def _tensors(tree):
    """Every tensor in nested dicts and lists."""
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for value in tree.values():
            yield from _tensors(value)
    elif isinstance(tree, list | tuple):
        for value in tree:
            yield from _tensors(value)


def _step(path: Path) -> float:
    """The training step a checkpoint holds (maps it, reads only its header). An unreadable one
    counts by its name: `step_N` at N, any other (a truncated last.ckpt) as the newest."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"]
    except Exception:
        named = re.fullmatch(r"step_(\d+)", path.stem)
        return int(named.group(1)) if named else math.inf


def resume_checkpoint(resume: str, run_dir: Path) -> str | None:
    """The checkpoint to continue from: `resume` is false, true (the run's newest checkpoint
    by step), auto (the newest intact one, if any) or a checkpoint path."""
    if resume == "false":
        return None
    if resume not in ("true", "auto"):
        verify_checkpoint(resume)
        return str(resume)
    directory = run_dir / "checkpoints"
    paths = sorted(directory.glob("*.ckpt")) if directory.is_dir() else []
    if not paths:
        if resume == "auto":
            return None
        raise UserError(
            f"{directory}: no checkpoint to resume; pass the run_name of an earlier run or "
            "resume=path/to.ckpt"
        )
    steps = {path: _step(path) for path in paths}
    paths.sort(key=lambda p: (-steps[p], p.name != "last.ckpt"))  # newest first
    skipped = []
    for path in paths:
        try:
            verify_checkpoint(path)
        except DamagedCheckpoint as error:
            if resume == "true":
                raise
            skipped.append(f"{error.path.name} ({error.reason})")
            continue
        if skipped and rank_zero_only.rank == 0:
            log.info(f"resume=auto: skipped {', '.join(skipped)}; resuming from {path.name}")
        return str(path)
    raise UserError(
        f"{directory}: no intact checkpoint ({', '.join(skipped)}); move them away to start again"
    )


def export_checkpoint(checkpoint_path: str | Path, directory: str | Path) -> Path:
    """The model directory of a checkpoint written by `elmo train`."""
    checkpoint = verify_checkpoint(checkpoint_path)
    if not checkpoint.get("vocab"):
        raise UserError(f"{checkpoint_path}: not an elmo-train checkpoint (no vocab)")
    module = BiLMModule(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    card = ModelCard.from_dict(checkpoint.get("card") or {})
    if card.steps is None:
        card.steps = checkpoint.get("global_step")
    vocab = Vocabulary(checkpoint["vocab"], require_unk=False)
    return save_model_dir(module.lm, vocab, directory, card, checkpoint.get("config_yaml", ""))
