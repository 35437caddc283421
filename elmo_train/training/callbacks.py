"""Callbacks of elmo-train's own."""

import hashlib
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException


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
    """`ModelCheckpoint` every N steps, written after the validation that falls on the same step.

    Lightning writes a step checkpoint at the end of the training batch, before that step's
    validation, and a run resumed from it does not validate again: the perplexity of that
    validation was never logged if the run died during it, and the plateau schedule (Kim et al.)
    missed a comparison. A checkpoint due on a validation step waits for `on_validation_end`,
    after the scores are logged and the schedule has stepped; Lightning resumes from such a
    checkpoint without validating twice.

    A run stopped by SIGTERM (SLURM or Kubernetes preemption, `kill`) stops after the step or
    the validation it is in, with a checkpoint of that step, so the resumed run loses nothing
    and validates exactly as the uninterrupted run would have. Other exceptions (Ctrl-C, out of
    memory) can stop a step halfway and save nothing.
    """

    _save_after_validation = False
    _sigterm_during_validation = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        due = self._every_n_train_steps > 0 and trainer.global_step % self._every_n_train_steps == 0
        if due and _validation_follows(trainer):
            self._save_after_validation = True
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer, *args, **kwargs) -> None:
        # Lightning stops mid-validation on SIGTERM, and a checkpoint cannot hold half a
        # validation: the signal is hidden until the validation ends. Not under DDP, where
        # Lightning's signal handlers broadcast to the other ranks and rely on its own stops.
        if trainer.received_sigterm and trainer.state.fn == "fit" and trainer.world_size == 1:
            self._sigterm_during_validation = True
            trainer._signal_connector.received_sigterm = False

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if self._save_after_validation or self._sigterm_during_validation:
            self._save_after_validation = False
            self._save_step(trainer)
        if self._sigterm_during_validation:  # the training loop stops after this validation
            self._sigterm_during_validation = False
            trainer._signal_connector.received_sigterm = True

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # SIGTERM during a training step: Lightning stops after it. A validation step was saved
        # at on_validation_end: Lightning counts the step once more when it resumes from a
        # checkpoint written after that, so a signal arriving in between keeps the older one.
        if (
            isinstance(exception, SIGTERMException)
            and trainer.training
            and not _validation_follows(trainer)
        ):
            self._save_step(trainer)

    def _save_step(self, trainer) -> None:
        """The step's checkpoint and last.ckpt, as ModelCheckpoint writes them (once per step)."""
        if self._should_skip_saving_checkpoint(trainer):  # includes: this step is saved
            return
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)


def _validation_follows(trainer: L.Trainer) -> bool:
    """Whether Lightning validates right after the current training batch (its own decision)."""
    epoch_loop = trainer.fit_loop.epoch_loop
    has_batches = sum(trainer.num_val_batches) > 0
    return has_batches and epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher)


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
