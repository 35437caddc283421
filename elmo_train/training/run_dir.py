"""The run directory: checked before anything writes into it, so a bad path is one line.

Hydra creates its output directory (`hydra.run.dir`, `runs/<run_name>` by default; the sweep
directory under `-m`) and writes `.hydra/` there before `elmo train` runs, and a path it cannot
create ended in Hydra's traceback. `RunDirCheck` (a Hydra callback, `configs/train.yaml`) checks it
first; `train()` checks `run_dir` itself, which may be set apart from Hydra's directory.
"""

import sys

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from elmo_train.errors import UserError
from elmo_train.formats.atomic import writable_dir


class RunDirCheck(Callback):
    """Ends `elmo train` with one line (exit 2) when Hydra's output directory is unusable."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _check(config.hydra.sweep.dir, "hydra.sweep.dir")


def _check(path: str, key: str) -> None:
    # Hydra reports an exception from here with a traceback; SystemExit passes through it.
    try:
        writable_dir(path, f"run directory ({key})")
    except UserError as error:
        print(f"elmo: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
