"""Progress as log lines: what a run whose output goes to a file or a pipe shows.

A rich progress bar draws on a terminal only; redirected, it printed nothing for a whole run.
`ProgressLog` logs a line every N seconds (step, loss, tokens/s, ETA) and one per validation
to `runs/<name>/train.log`, and to stdout when stdout is not a terminal, where it replaces
the bar (`elmo_train.runtime.configure_logging` keeps the lines off a terminal).
"""

import logging
import time

import lightning as L

from elmo_train.errors import UserError
from elmo_train.runtime import progress_on_stdout

log = logging.getLogger(__name__)


class ProgressLog(L.Callback):
    """A progress line every `every_seconds` of training or validation, and after each validation.

    tokens/s counts batch x window positions of all ranks (as `perf/tokens_per_sec`) over the
    training time since the last line; the ETA divides the steps left by the run's rate so
    far, validations included. Rank zero only.
    """

    def __init__(self, every_seconds: float = 30.0):
        if every_seconds < 0:
            raise UserError(
                f"callbacks.progress_log.every_seconds={every_seconds}: use 0 or more seconds"
            )
        self.every_seconds = every_seconds
        self._start = self._last = 0.0
        self._start_step = self._last_step = 0
        self._tokens = 0  # since the last line
        self._validating_since = self._last_validation_line = 0.0
        self._validation_time = 0.0  # since the last line

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Redirected, a progress bar prints only its last frame, wrapped at 80 columns.
        if progress_on_stdout() and trainer.progress_bar_callback is not None:
            trainer.progress_bar_callback.disable()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._start_step = self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._tokens += batch.mask.numel() * trainer.world_size
        if time.monotonic() - self._last >= self.every_seconds:
            self._log_training(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step > self._last_step:
            self._log_training(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validating_since = self._last_validation_line = time.monotonic()

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        now = time.monotonic()
        if now - max(self._last, self._last_validation_line) >= self.every_seconds:
            total = trainer.num_val_batches[dataloader_idx]
            of = f"/{total:,}" if total != float("inf") else ""
            self._emit(
                trainer, f"validation at step {trainer.global_step:,}: batch {batch_idx + 1:,}{of}"
            )
            self._last_validation_line = now

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._validation_time += time.monotonic() - self._validating_since
        scores = {
            name: float(value)
            for name, value in sorted(trainer.callback_metrics.items())
            if name.split("/")[0] in ("val", "test")
        }
        figures = "  ".join(f"{name} {value:.2f}" for name, value in scores.items())
        self._emit(trainer, f"validation at step {trainer.global_step:,}: {figures}")

    def _log_training(self, trainer: L.Trainer) -> None:
        now, step = time.monotonic(), trainer.global_step
        training_time = max(now - self._last - self._validation_time, 1e-9)
        parts = [f"step {step:,}"]
        if trainer.max_steps > 0:
            parts[0] += f"/{trainer.max_steps:,} ({step / trainer.max_steps:.0%})"
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            parts.append(f"loss {float(loss):.3f}")
        parts.append(f"{self._tokens / training_time:,.0f} tokens/s")
        parts.append(f"elapsed {_duration(now - self._start)}")
        if trainer.max_steps > 0 and step > self._start_step:
            per_step = (now - self._start) / (step - self._start_step)
            parts.append(f"ETA {_duration((trainer.max_steps - step) * per_step)}")
        self._emit(trainer, "  ".join(parts))
        self._last, self._last_step = now, step
        self._tokens, self._validation_time = 0, 0.0

    @staticmethod
    def _emit(trainer: L.Trainer, line: str) -> None:
        if trainer.is_global_zero:
            log.info(line, extra={"progress": True})


def _duration(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
