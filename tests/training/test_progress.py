"""Progress lines: in the run's log file always, on stdout when it is not a terminal."""

import logging
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from train_helpers import compose_train_config, fast_overrides

from elmo_train.errors import UserError
from elmo_train.train import train
from elmo_train.training.progress import ProgressLog, _duration

STEP_LINE = re.compile(
    r"^step (\d+)/4 \(\d+%\)  loss \d+\.\d{3}  [\d,]+ tokens/s  elapsed \d+s  ETA \d+s$"
)
# What Lightning and torch print that no user needs (issue #16: adverts, deprecations).
NOISE = ("💡", "Tip:", "litlogger", "litmodels", "deprecated", "Warning", "TPU available")


def overrides(corpus, cache, run_dir) -> list[str]:
    return [
        *fast_overrides(corpus, run_dir, cache, steps=4),
        "val_every=2",
        "export=false",
        "test=false",
        "callbacks.progress_log.every_seconds=0",  # a line after every step
    ]


def test_a_line_per_interval_with_step_loss_tokens_per_second_and_eta(
    corpus, cache, tmp_path, caplog
):
    with caplog.at_level(logging.INFO, logger="elmo_train.training.progress"):
        train(compose_train_config(overrides(corpus, cache, tmp_path)))
    records = [r for r in caplog.records if r.name == "elmo_train.training.progress"]
    assert all(r.progress for r in records)  # kept off a terminal by runtime.configure_logging
    lines = [r.getMessage() for r in records]
    steps = [int(m[1]) for line in lines if (m := STEP_LINE.match(line))]
    assert steps == [1, 2, 3, 4]
    # A long validation says how far it is.
    assert any(re.fullmatch(r"validation at step 2: batch 1/\d+", line) for line in lines)
    validations = [v for v in lines if v.startswith("validation at step") and ": batch" not in v]
    assert [v.split(":")[0] for v in validations] == [
        "validation at step 2",
        "validation at step 4",
    ]
    assert re.search(r"val/ppl \d+\.\d\d", validations[0])


def test_durations_read_as_a_person_writes_them():
    assert [_duration(s) for s in (0.4, 42, 185, 7620)] == ["0s", "42s", "3m05s", "2h07m"]


def test_a_negative_interval_is_a_user_error():
    with pytest.raises(UserError, match="callbacks.progress_log.every_seconds=-1"):
        ProgressLog(every_seconds=-1)


def command(corpus, cache, run_dir) -> list[str]:
    return [
        sys.executable, "-m", "elmo_train", "train", *overrides(corpus, cache, run_dir),
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip


@pytest.mark.slow
def test_redirected_output_shows_progress_lines_and_no_adverts(corpus, cache, tmp_path):
    run = subprocess.run(
        command(corpus, cache, tmp_path / "run"),
        cwd=tmp_path,
        capture_output=True,  # stdout is a pipe, not a terminal
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    stdout = run.stdout.splitlines()
    assert [int(m[1]) for line in stdout if (m := STEP_LINE.match(line))] == [1, 2, 3, 4]
    assert any(line.startswith("validation at step 2: val/loss") for line in stdout)
    assert "━" not in run.stdout  # no progress bar frame in a file
    for noise in NOISE:
        assert noise not in run.stdout + run.stderr, noise
    assert "Traceback" not in run.stderr
    log = (tmp_path / "run" / "train.log").read_text()
    assert len(re.findall(r"\]\[INFO\] - step \d+/4 ", log)) == 4
    assert "] - GPU available: False" in log  # Lightning's own lines are recorded too
    assert "][INFO] - prepare: " in log  # and the data preparation report (OOV, skipped lines)
    assert "validation at step 4: val/loss" in log


@pytest.mark.slow
def test_on_a_terminal_the_bar_shows_progress_and_the_log_file_has_the_lines(
    corpus, cache, tmp_path
):
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        command(corpus, cache, tmp_path / "run"),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    output, deadline = b"", time.monotonic() + 300
    while time.monotonic() < deadline:
        if select.select([controller], [], [], 1)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
    os.close(controller)
    assert process.wait(timeout=60) == 0
    text = output.decode(errors="replace")
    assert "━" in text and "Training" in text  # the rich bar
    assert "step 1/4 (" not in text
    log = (tmp_path / "run" / "train.log").read_text()
    assert len(re.findall(r"\]\[INFO\] - step \d+/4 ", log)) == 4
