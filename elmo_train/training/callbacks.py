"""Callbacks of elmo-train's own.

The one module that leans on Lightning beyond its public hooks: `StepCheckpoint` calls
`ModelCheckpoint`'s own saving methods, and `validation_follows` and the checkpoints' timing rely
on how Lightning 2.6 schedules validation and resumes a checkpoint written at the end of a batch
or of a validation. tests/training/test_callbacks.py and the resume tests of tests/test_train.py
pin that behaviour; pyproject.toml bounds `lightning` to the minor version they ran on.
"""

import hashlib
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar


class DataAudit(L.Callback):
    """Records what each rank trained on and a digest of its final weights.

    Writes `audit_rank{R}.pt` with the forward targets of every training batch `(steps, B, T)`
    and the SHA-256 of the parameters, so runs can be checked for disjoint data across ranks,
    exact resumption and identical weights after DDP.
    """

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)
        self.targets: list[torch.Tensor] = []
        self.steps: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.targets.append(batch.fwd_targets.cpu())
        self.steps.append(trainer.global_step)

    def on_train_end(self, trainer, pl_module) -> None:
        digest = hashlib.sha256()
        for name, param in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            digest.update(param.detach().cpu().contiguous().numpy().tobytes())
        self.dirpath.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "steps": self.steps,
                "targets": torch.stack(self.targets),
                "weights": digest.hexdigest(),
            },
            self.dirpath / f"audit_rank{trainer.global_rank}.pt",
        )


class StepCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` every N steps and at the last step, written after the validation that
    falls on the same step.

    Lightning writes a step checkpoint at the end of the training batch, before that step's
    validation, and a run resumed from it does not validate again: the perplexity of that
    validation was never logged if the run died during it, and the plateau schedule (Kim et al.)
    missed a comparison. A checkpoint due on a validation step waits for `on_validation_end`,
    after the scores are logged and the schedule has stepped; Lightning resumes from such a
    checkpoint without validating twice. `save_step` writes one now, for a stop on a signal
    (`elmo_train.training.preemption`).

    The last step is always saved (Lightning's `save_last` keeps the newest periodic one), and
    no `-v1` copies are made: a resumed copy of a run directory overwrites its own files.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(enable_version_counter=False, **kwargs)
        self._save_after_validation = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        due = self._every_n_train_steps > 0 and step % self._every_n_train_steps == 0
        if not (due or step == trainer.max_steps):
            return
        if validation_follows(trainer):
            self._save_after_validation = True
        else:
            self.save_step(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if self._save_after_validation or trainer.should_stop:  # early stopping: the last step
            self._save_after_validation = False
            self.save_step(trainer)

    def save_step(self, trainer) -> None:
        """The step's checkpoint and last.ckpt, as ModelCheckpoint writes them (once per step)."""
        if self._should_skip_saving_checkpoint(trainer):  # includes: this step is saved
            return
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)


def validation_follows(trainer: L.Trainer) -> bool:
    """Whether Lightning validates right after the training batch that just ended.

    train.py gives the Trainer an integer `val_check_interval` and `check_val_every_n_epoch=None`:
    Lightning then validates after every `val_check_interval`-th batch of the run, if it has
    anything to validate (tests/training/test_callbacks.py pins this against Lightning's loop).
    """
    batches = trainer.fit_loop.total_batch_idx + 1
    interval = trainer.val_check_batch
    return trainer.enable_validation and interval != float("inf") and batches % interval == 0


class RunProgressBar(RichProgressBar):
    """Lightning's rich bar, counting the steps of the whole run.

    The training stream is one endless Lightning epoch. After a resume Lightning's count goes on
    from the checkpoint's step but its total is the steps left (33175/13174 at the end of a
    resumed Kim run), and its label reads "Epoch 0/-2"; here the total is the run's `max_steps`
    and the label says "Training".
    """

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{'Training':{len(self.validation_description)}}"

    @property
    def total_train_batches(self) -> int | float:
        if self.trainer.num_training_batches == float("inf") and self.trainer.max_steps > 0:
            return self.trainer.max_steps
        return super().total_train_batches
