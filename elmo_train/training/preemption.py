"""SIGTERM and Ctrl-C: training stops at the end of a step, with a checkpoint of that step.

Schedulers (SLURM, Kubernetes) and `kill` send SIGTERM; Ctrl-C sends SIGINT to the whole
foreground process group. Either way the step that is running finishes, and the validation that
follows it if one is due, that step is saved (`StepCheckpoint.save_step`), and `elmo train` exits
128 + the signal's number (143, 130) with the line to resume. A second Ctrl-C aborts at once,
without saving the running step. Under DDP the ranks agree on the step to stop after, whichever
rank was signalled.

Lightning's own SIGTERM handling is replaced while `trainer.fit` runs: it stops in the middle of a
validation, which no checkpoint can hold, and ends the process with status 0.

The other side, DataLoader workers that outlive a SIGTERM the main process did not send so that it
can still write its checkpoint, is `elmo_train/data/workers.py`. Workers forked while these
handlers are installed inherit them and leave the signal to the main process.
"""

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_info

from elmo_train.training.callbacks import StepCheckpoint, validation_follows

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """Training stopped on a signal: after `step`, or mid-step (None) on a second Ctrl-C.

    A BaseException, like KeyboardInterrupt: no `except Exception` on its way may swallow it.
    """

    def __init__(self, signum: int, step: int | None) -> None:
        self.signum, self.step = signum, step
        name = signal.Signals(signum).name
        when = f"stopped by {name} after step {step}" if step is not None else f"aborted by {name}"
        super().__init__(when)

    def report(self, checkpoints: Path) -> str:
        """The line `elmo train` ends with: what happened and how to continue."""
        if any(checkpoints.glob("*.ckpt")):
            return f"elmo: {self}; continue with resume=true ({checkpoints})"
        return f"elmo: {self}; no checkpoint yet: start again ({checkpoints})"


class Preemption(Callback):
    """Stops training at a step boundary after SIGTERM or SIGINT, with that step's checkpoint.

    Use `with preemption.handling_signals(): trainer.fit(...)`, then `raise_if_stopped`.
    """

    def __init__(self) -> None:
        self.signum: int | None = None  # the first stop signal this process received
        self._saved_step: int | None = None  # the step saved to stop after
        self._pid = os.getpid()
        self._announced = False

    def _on_signal(self, signum: int, frame) -> None:
        if os.getpid() != self._pid:  # a DataLoader worker: the main process decides
            return
        if self.signum is None:
            self.signum = signum
        elif signum == signal.SIGINT:  # a second Ctrl-C: now
            raise Stopped(signum, None)

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT handled by this callback inside the block (the main thread's)."""
        previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
        for signum in SIGNALS:
            signal.signal(signum, self._on_signal)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def raise_if_stopped(self, step: int) -> None:
        """After `fit`, which ended at `step` (always saved): a signal during the last step
        stops the run there too, before evaluation and export."""
        if self.signum is not None:
            raise Stopped(self.signum, step)

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning installs its SIGTERM handler after `on_fit_start`, wrapping ours: take over.
        signal.signal(signal.SIGTERM, self._on_signal)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # The stopped step is saved and its metrics logged: stop before the next one.
        if self._saved_step is not None:
            raise Stopped(self.signum, self._saved_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not validation_follows(trainer) and self._agreed(trainer):
            self._save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self._agreed(trainer):
            self._save(trainer)

    def _agreed(self, trainer) -> bool:
        """Whether to stop after this step: any rank received a signal (a collective under DDP,
        where every rank asks at the same steps)."""
        stop = trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False)
        if stop and self.signum is None:  # another rank was signalled
            self.signum = signal.SIGTERM
        if stop and not self._announced:
            self._announced = True
            rank_zero_info(f"elmo: {signal.Signals(self.signum).name}: stopping after this step")
        return stop

    def _save(self, trainer) -> None:
        checkpoint = trainer.checkpoint_callback
        if isinstance(checkpoint, StepCheckpoint):
            checkpoint.save_step(trainer)
        self._saved_step = trainer.global_step
