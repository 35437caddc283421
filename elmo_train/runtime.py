"""How an `elmo` process uses the machine: how many threads, how they wait, what it prints.

torch starts as many OpenMP threads as the machine has cores and lets them spin while they
wait. Beside any other busy process that collapses throughput (the default `elmo train` fell
to 1 % of its speed on 2 cores; docs/PERFORMANCE.md): a spinning thread holds the core that the
thread it waits for needs. So threads come from the CPUs this process may use (affinity mask,
cgroup quota), minus DataLoader workers, and wait passively. This module imports neither torch
nor Lightning: `elmo` sets the environment before either loads.
"""

import getpass
import logging
import math
import os
import sys
import tempfile
import warnings
from collections.abc import MutableMapping
from pathlib import Path

from elmo_train.errors import UserError

# Lines third-party libraries log that no `elmo` user needs: adverts and hardware we never use.
NOISE = ("💡 Tip:", "TPU available:", "HPU available:", "Seed set to ")


def prefer_passive_wait(environ: MutableMapping[str, str] = os.environ) -> None:
    """Idle OpenMP threads sleep instead of spinning, unless the user chose how they wait.

    libgomp (torch's OpenMP) reads the policy once, when torch loads: call this first.
    """
    if not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"} & environ.keys():
        environ["OMP_WAIT_POLICY"] = "PASSIVE"


def compile_cache_per_capability(environ: MutableMapping[str, str] = os.environ) -> None:
    """A forced `ATEN_CPU_CAPABILITY` gets its own torch.compile cache, unless the user chose one.

    The cache does not key its generated C++ by the vector ISA: kernels built for AVX-512 and
    reused under `ATEN_CPU_CAPABILITY=avx2` gave NaN, and under `=default` failed to build, so
    `model.lstm.impl=compiled` quietly ran eager. The default directory keeps the native ones.
    """
    capability = environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if capability and "TORCHINDUCTOR_CACHE_DIR" not in environ:
        name = f"torchinductor_{getpass.getuser()}-{capability}"
        environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), name)


def cgroup_cpu_limit(root: Path = Path("/")) -> float | None:
    """The tightest CPU quota, in CPUs, on this process's cgroup or an ancestor; None: no quota.

    Containers and SLURM jobs limit CPU time with a quota (cgroup v2 `cpu.max`, v1
    `cpu.cfs_quota_us` / `cpu.cfs_period_us`) while the affinity mask still shows every core.
    Where the cgroup path of /proc/self/cgroup is not under the mount (a container without a
    cgroup namespace), the mount's own files are the container's.
    """
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one unified hierarchy
            for directory in _ancestors(root / "sys/fs/cgroup", path):
                limits.append(_read_cpu_max(directory / "cpu.max"))
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's own mount
            for mount in dict.fromkeys(("cpu", controllers)):
                for directory in _ancestors(root / "sys/fs/cgroup" / mount, path):
                    limits.append(_read_cfs_quota(directory))
    return min((limit for limit in limits if limit is not None), default=None)


def usable_cpus(root: Path = Path("/")) -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota.

    A fractional quota rounds down (1.5 CPUs -> 1): a second thread would be throttled for the
    half it lacks and stall the first at every synchronisation.
    """
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:  # macOS, Windows
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cpus = min(cpus, max(1, math.floor(limit)))
    return cpus


def choose_threads(
    setting: str | int, workers: int = 0, environ: MutableMapping[str, str] = os.environ
) -> tuple[int, str]:
    """Intra-op threads for `setting` (`auto` or a number), and why, in words.

    `auto`: the user's OMP_NUM_THREADS if set (Lightning sets it for DDP ranks: cores divided
    by processes), else the usable CPUs minus DataLoader workers (each runs one thread), at
    least one.
    """
    text = str(setting).strip().lower()
    if text != "auto":
        if not text.isdigit() or int(text) < 1:
            raise UserError(f"threads={setting}: expected auto or a number of threads (1 or more)")
        return int(text), "threads=" + text
    omp = environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        return int(omp), f"OMP_NUM_THREADS={omp}"
    cpus = usable_cpus()
    threads = max(1, cpus - workers)
    why = f"{cpus} usable CPU{'s' * (cpus != 1)}"
    if workers:
        why += f" minus {workers} DataLoader worker{'s' * (workers != 1)}"
    return threads, why


def set_threads(setting: str | int, workers: int = 0) -> str:
    """Applies `choose_threads` to torch, if loaded; returns a line that says what and why."""
    threads, why = choose_threads(setting, workers)
    if "torch" in sys.modules:  # `elmo plot` never loads it
        sys.modules["torch"].set_num_threads(threads)
    if str(setting).strip().lower() != "auto":
        # Lightning's DDP launcher would otherwise pick its own count for every rank.
        os.environ["OMP_NUM_THREADS"] = str(threads)
    return f"threads: {threads} ({why}; threads=N to change)"


def quiet_warnings() -> None:
    """No deprecation warnings from libraries in a command's output; `-W`/PYTHONWARNINGS win.

    Call it after Lightning is imported: its import puts its own filter first.
    """
    if sys.warnoptions:
        return
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)


def configure_logging(stdout_is_terminal: bool | None = None) -> None:
    """Shapes the logging Hydra's job config set up (a stdout handler and `train.log`).

    Lightning's lines join the root logger, so `train.log` records them; the console shows bare
    messages (the file keeps Hydra's time stamps); on a terminal, where the progress bar shows
    progress, records logged with `extra={"progress": True}` stay off it; `NOISE` is dropped.
    """
    root = logging.getLogger()
    if not root.handlers:  # hydra/job_logging=disabled: nothing to shape
        return
    if stdout_is_terminal is None:
        stdout_is_terminal = sys.stdout.isatty()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):  # the stderr handler each adds on import
            logger.removeHandler(handler)
        logger.propagate = True
    for handler in root.handlers:
        handler.addFilter(_drop_noise)
        if _writes_to_stdout(handler):
            handler.setFormatter(logging.Formatter("%(message)s"))
            if stdout_is_terminal:
                handler.addFilter(_not_progress)


def progress_on_stdout() -> bool:
    """Whether progress records reach stdout (`elmo train` redirected), where they replace a bar."""
    record = logging.makeLogRecord({"levelno": logging.INFO, "progress": True})
    handlers = logging.getLogger().handlers
    return any(
        _writes_to_stdout(h) and h.level <= logging.INFO and h.filter(record) for h in handlers
    )


def _drop_noise(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(NOISE)


def _not_progress(record: logging.LogRecord) -> bool:
    return not getattr(record, "progress", False)


def _writes_to_stdout(handler: logging.Handler) -> bool:
    return (
        isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
        and getattr(handler, "stream", None) in (sys.stdout, sys.__stdout__)
    )


def _ancestors(mount: Path, path: str) -> list[Path]:
    """`mount/a/b`, `mount/a`, `mount` for the cgroup path `/a/b`."""
    parts = [part for part in path.strip("/").split("/") if part]
    return [mount.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _read_cpu_max(file: Path) -> float | None:
    try:
        quota, period = file.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _read_cfs_quota(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period
