"""The default `elmo train` quiet and beside one busy process: tokens/s and their ratio.

A laptop or a shared server always has other work running. This runs the default `elmo train`
(the built-in corpus, the `tiny` model) in rounds; in each round every variant trains once on
a quiet machine and once beside `python -c 'while True: pass'`, in alternating order. Tokens/s
are the progress lines' (`callbacks.progress_log`, wall time of training steps, data loading
included, validations excluded), the median over a fixed window after a warm-up; the run is
then killed. The loaded/quiet ratio is paired within each round.

    python scripts/bench_load.py                             # before vs after, 3 rounds
    python scripts/bench_load.py --variants after threads2 --rounds 5 --json out.json

Variants: `before` forces what `elmo train` did before it chose threads (torch's default of
one thread per core, libgomp's default spinning: GOMP_SPINCOUNT=300000 is that default),
`after` is today's default, `threads2` today's passive waiting with 2 threads.
Other jobs on the machine are noise: before each measurement the script waits (up to
--wait-quiet seconds) for them to use under 0.3 cores and records what they used. On a
machine that stays busy, `--nice -10` (root) runs the training and the busy process at the
same raised priority (their processes' and, where the kernel groups sessions, their session
groups' niceness), so that they compete with each other and the other jobs yield.
"""

import argparse
import datetime
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

VARIANTS = {
    "before": ({"GOMP_SPINCOUNT": "300000"}, ["threads=2"]),
    "after": ({}, []),
    "threads2": ({}, ["threads=2"]),
}
TOKENS_PER_S = re.compile(r"^step .*?([\d,]+) tokens/s")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def busy_seconds() -> float:
    """CPU seconds all processes spent, from /proc/stat (user .. steal, not idle/iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS


def session_seconds(sid: int) -> float:
    """CPU seconds of the live processes of session `sid` (a training run and its workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of stat: the session id
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def prioritise(process: subprocess.Popen, nice: int) -> None:
    """`nice` for the session group of `process` too: with sched_autogroup, CFS shares the CPU
    between sessions first, and a process's own niceness counts only inside its session."""
    autogroup = Path(f"/proc/{process.pid}/autogroup")
    if nice and autogroup.exists():
        autogroup.write_text(str(nice))


def wait_until_quiet(limit_s: float, seconds: float = 2.0, cores: float = 0.3) -> float:
    """Waits (at most `limit_s`) for a `seconds` window where others use < `cores`; returns it."""
    deadline = time.monotonic() + limit_s
    while True:
        start = busy_seconds()
        time.sleep(seconds)
        used = (busy_seconds() - start) / seconds
        if used < cores or time.monotonic() > deadline:
            return used


def measure(variant: str, loaded: bool, args, workdir: Path) -> dict:
    env_extra, overrides = VARIANTS[variant]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_"))}
    env.update(env_extra, PYTHONUNBUFFERED="1")
    run_dir = workdir / f"{variant}-{'loaded' if loaded else 'quiet'}-{time.time_ns()}"
    nice = ["nice", "-n", str(args.nice)]
    command = [
        *nice, sys.executable, "-m", "elmo_train", "train", *overrides,
        f"callbacks.progress_log.every_seconds={args.every}", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    others_before = wait_until_quiet(args.wait_quiet)
    processes = []  # each in its own session, killed with its children whatever happens
    try:
        if loaded:
            hog = subprocess.Popen(
                [*nice, sys.executable, "-c", "while True: pass"], start_new_session=True
            )
            processes.append(hog)
            prioritise(hog, args.nice)
        train = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        processes.append(train)
        prioritise(train, args.nice)
        rates, output = [], []  # (time, tokens/s) of each progress line; every line

        def read() -> None:
            for line in train.stdout:
                output.append(line)
                if match := TOKENS_PER_S.match(line):
                    rates.append((time.monotonic(), float(match.group(1).replace(",", ""))))

        threading.Thread(target=read, daemon=True).start()
        start = time.monotonic()
        while not rates and train.poll() is None and time.monotonic() - start < args.timeout:
            time.sleep(0.2)
        window_start = time.monotonic() + args.warmup
        busy0, ours0 = busy_seconds(), session_seconds(train.pid)
        hog0 = session_seconds(hog.pid) if loaded else 0.0
        while train.poll() is None and time.monotonic() < window_start + args.seconds:
            time.sleep(0.2)
        elapsed = time.monotonic() - window_start + args.warmup
        ours = session_seconds(train.pid) - ours0
        hog_used = session_seconds(hog.pid) - hog0 if loaded else 0.0
        others = (busy_seconds() - busy0 - ours - hog_used) / elapsed
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    window = [rate for t, rate in rates if window_start <= t <= window_start + args.seconds]
    if not window:
        sys.exit(f"{variant}: no progress line in the window; its output:\n{''.join(output)}")
    return {
        "variant": variant,
        "loaded": loaded,
        "tokens_per_s": statistics.median(window),
        "lines": len(window),
        "train_cores": ours / elapsed,
        "hog_cores": hog_used / elapsed,
        "others_cores": others,
        "others_cores_before": others_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["before", "after"], choices=VARIANTS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=10, help="seconds after the first line")
    parser.add_argument("--every", type=float, default=3, help="seconds between progress lines")
    parser.add_argument("--wait-quiet", type=float, default=60, help="seconds, at most")
    parser.add_argument("--timeout", type=float, default=300, help="for the first line")
    parser.add_argument("--nice", type=int, default=0, help="niceness of both processes")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # kill the runs on the way out

    results = []
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        for round_ in range(args.rounds):
            for v, variant in enumerate(args.variants):
                order = (False, True) if (round_ + v) % 2 == 0 else (True, False)
                for loaded in order:
                    result = measure(variant, loaded, args, Path(tmp)) | {"round": round_}
                    results.append(result)
                    print(json.dumps(result), flush=True)

    print(f"\npython {' '.join(sys.argv)}")
    print(f"{cpu_name()}, {len(os.sched_getaffinity(0))} CPUs, {datetime.date.today()}")
    print("| variant | quiet tokens/s | loaded tokens/s | loaded / quiet | others' cores q / l |")
    print("|---|---|---|---|---|")
    for variant in args.variants:
        rounds = {}
        for r in results:
            if r["variant"] == variant:
                rounds.setdefault(r["round"], {})[r["loaded"]] = r
        quiet = [r[False]["tokens_per_s"] for r in rounds.values()]
        loaded = [r[True]["tokens_per_s"] for r in rounds.values()]
        ratios = [r[True]["tokens_per_s"] / r[False]["tokens_per_s"] for r in rounds.values()]
        others = [
            statistics.median(r[loaded]["others_cores"] for r in rounds.values())
            for loaded in (False, True)
        ]
        print(
            f"| {variant} | {statistics.median(quiet):,.0f} ({min(quiet):,.0f}-{max(quiet):,.0f})"
            f" | {statistics.median(loaded):,.0f} ({min(loaded):,.0f}-{max(loaded):,.0f})"
            f" | {statistics.median(ratios):.0%} ({min(ratios):.0%}-{max(ratios):.0%})"
            f" | {others[0]:.2f} / {others[1]:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
