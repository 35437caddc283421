"""DataLoader worker processes: what each one sets up before it serves batches.

Each runs one intra-op thread (torch's worker loop sets it; tests/data/test_workers.py), and
`elmo_train.runtime` leaves a CPU per worker when it chooses the main process's threads.
"""

import os
import signal
import threading


def ignore_sigterm_unless_from(main_pid: int, worker_id: int) -> None:
    """DataLoader `worker_init_fn` (bound to the main process's pid): only it stops a worker.

    Schedulers send SIGTERM to every process of a job (SLURM), and `pkill -f` or
    `kill -- -PGID` reach the workers too. A worker killed that way makes the main process raise
    "DataLoader worker killed by signal" wherever it is, even inside the SIGTERM checkpoint's
    `torch.save`. Ignoring SIGTERM outright would hang the exit after an exception, when
    multiprocessing terminates and joins the workers, so a SIGTERM from `main_pid` still ends one.
    """
    if not hasattr(signal, "sigwaitinfo"):  # not on macOS: workers keep the default
        return
    # Blocked before the worker starts any other thread, so all its threads inherit the mask and
    # the signal waits for `sigwaitinfo`, which tells who sent it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def exit_when_main_asks() -> None:
        while signal.sigwaitinfo({signal.SIGTERM}).si_pid != main_pid:
            pass
        os._exit(0)

    threading.Thread(target=exit_when_main_asks, daemon=True).start()
