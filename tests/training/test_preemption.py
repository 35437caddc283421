"""Preemption: the signal handlers alone (the stops themselves: tests/test_train.py)."""

import os
import signal

import pytest

from elmo_train.training.preemption import Preemption, Stopped


def test_handlers_are_installed_for_the_block_and_restored_after():
    preemption = Preemption()
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with preemption.handling_signals():
        os.kill(os.getpid(), signal.SIGTERM)  # recorded, the process lives on
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM changes nothing
        assert preemption.signum == signal.SIGTERM
    assert {s: signal.getsignal(s) for s in before} == before
    with pytest.raises(Stopped, match="stopped by SIGTERM after step 12"):
        preemption.raise_if_stopped(12)


def test_a_second_sigint_raises_at_once():
    preemption = Preemption()
    with pytest.raises(Stopped, match="aborted by SIGINT") as stop:
        with preemption.handling_signals():
            os.kill(os.getpid(), signal.SIGINT)
            assert preemption.signum == signal.SIGINT
            os.kill(os.getpid(), signal.SIGINT)
    assert stop.value.step is None and stop.value.signum == signal.SIGINT


def test_the_last_line_says_how_to_continue(tmp_path):
    stop = Stopped(signal.SIGTERM, 30)
    assert stop.report(tmp_path) == (
        f"elmo: stopped by SIGTERM after step 30; no checkpoint yet: start again ({tmp_path})"
    )
    (tmp_path / "step_0000030.ckpt").write_bytes(b"")
    assert stop.report(tmp_path).endswith(f"; continue with resume=true ({tmp_path})")
