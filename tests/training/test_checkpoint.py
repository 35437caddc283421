"""Checkpoint files: atomic writes with a checksum, verification, which checkpoint resumes."""

import hashlib
import logging
import os
import shutil

import pytest
import torch

from elmo_train.errors import UserError
from elmo_train.training.checkpoint import (
    AtomicCheckpointIO,
    DamagedCheckpoint,
    checksum_path,
    export_checkpoint,
    resume_checkpoint,
    verify_checkpoint,
)


def fake_checkpoint(step: int, value: float = 1.0) -> dict:
    """What verification reads of a Lightning checkpoint (the real ones: tests/test_train.py)."""
    weight = torch.full((64, 64), value)
    return {
        "global_step": step,
        "hyper_parameters": {},
        "state_dict": {"lm.weight": weight},
        "optimizer_states": [{"state": {0: {"sum": weight.clone()}}}],
        # A callback's "no best score yet" is inf and must not make the checkpoint damaged.
        "callbacks": {"ModelCheckpoint": {"kth_value": torch.tensor(float("inf"))}},
    }


def save(path, checkpoint) -> None:
    AtomicCheckpointIO().save_checkpoint(checkpoint, path)


def test_the_checksum_beside_a_checkpoint_is_sha256sum_of_the_file(tmp_path):
    path = tmp_path / "last.ckpt"
    save(path, fake_checkpoint(3))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert checksum_path(path).read_text() == f"{digest}  last.ckpt\n"  # `sha256sum -c` format
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.ckpt.sha256"]
    assert verify_checkpoint(path)["global_step"] == 3


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_partial(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save(path, fake_checkpoint(1))

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save(path, fake_checkpoint(2))
    monkeypatch.undo()
    assert verify_checkpoint(path)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.ckpt.sha256"]


def test_removing_a_checkpoint_removes_its_checksum(tmp_path):
    path = tmp_path / "step_0000002.ckpt"
    save(path, fake_checkpoint(2))
    AtomicCheckpointIO().remove_checkpoint(path)
    assert list(tmp_path.iterdir()) == []


def test_damaged_bytes_fail_the_checksum(tmp_path):
    path = tmp_path / "last.ckpt"
    save(path, fake_checkpoint(3))
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 2048] = os.urandom(2048)
    path.write_bytes(data)
    with pytest.raises(
        DamagedCheckpoint, match=r"last\.ckpt: damaged: its sha256 differs"
    ) as error:
        verify_checkpoint(path)
    assert "\n" not in str(error.value)


def test_a_truncated_checkpoint_is_one_line_without_torch_internals(tmp_path):
    path = tmp_path / "last.ckpt"
    save(path, fake_checkpoint(3))
    path.write_bytes(path.read_bytes()[:5000])
    checksum_path(path).unlink()  # no checksum to compare with: the load itself must tell
    with pytest.raises(DamagedCheckpoint, match="does not load") as error:
        verify_checkpoint(path)
    assert "PytorchStreamReader" not in str(error.value) and "\n" not in str(error.value)


def test_non_finite_weights_make_a_checkpoint_unusable(tmp_path):
    path = tmp_path / "last.ckpt"
    save(path, fake_checkpoint(3, value=float("nan")))  # its checksum matches: NaN was saved
    with pytest.raises(DamagedCheckpoint, match="NaN or inf"):
        verify_checkpoint(path)


def test_a_crash_between_the_two_renames_leaves_a_usable_checkpoint(tmp_path):
    # The new checkpoint is in place but its checksum is still the previous file's; the new
    # checksum waits beside it.
    path = tmp_path / "last.ckpt"
    save(path, fake_checkpoint(1))
    stale = checksum_path(path).read_text()
    save(path, fake_checkpoint(2))
    os.replace(checksum_path(path), tmp_path / "last.ckpt.sha256.partial")
    checksum_path(path).write_text(stale)
    assert verify_checkpoint(path)["global_step"] == 2


def run_with(tmp_path, **checkpoints: dict):
    directory = tmp_path / "checkpoints"
    for name, checkpoint in checkpoints.items():
        save(directory / f"{name}.ckpt", checkpoint)
    return directory


def test_resume_true_takes_the_newest_checkpoint_by_step_whatever_its_name(tmp_path):
    # A resumed copy of a run directory used to write last-v1.ckpt; last.ckpt was older.
    directory = run_with(tmp_path, **{"last": fake_checkpoint(4), "last-v1": fake_checkpoint(8)})
    assert resume_checkpoint("true", tmp_path) == str(directory / "last-v1.ckpt")


def test_resume_true_refuses_a_damaged_newest_checkpoint(tmp_path):
    directory = run_with(tmp_path, last=fake_checkpoint(6), step_0000004=fake_checkpoint(4))
    (directory / "last.ckpt").write_bytes((directory / "last.ckpt").read_bytes()[:3000])
    with pytest.raises(UserError, match=r"last\.ckpt: .*resume=auto"):
        resume_checkpoint("true", tmp_path)


def test_resume_auto_falls_back_to_the_newest_intact_checkpoint_and_says_so(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    directory = run_with(
        tmp_path,
        last=fake_checkpoint(6),
        step_0000006=fake_checkpoint(6, value=float("inf")),
        step_0000004=fake_checkpoint(4),
        step_0000002=fake_checkpoint(2),
    )
    (directory / "last.ckpt").write_bytes((directory / "last.ckpt").read_bytes()[:3000])
    assert resume_checkpoint("auto", tmp_path) == str(directory / "step_0000004.ckpt")
    said = caplog.text
    assert "skipped last.ckpt (damaged: its sha256 differs" in said
    assert "step_0000006.ckpt (its weights or optimizer state hold NaN or inf)" in said
    assert "resuming from step_0000004.ckpt" in said


def test_resume_auto_without_checkpoints_starts_afresh_and_with_only_damaged_ones_stops(
    tmp_path,
):
    assert resume_checkpoint("auto", tmp_path) is None
    directory = run_with(tmp_path, last=fake_checkpoint(2, value=float("nan")))
    with pytest.raises(UserError, match="no intact checkpoint"):
        resume_checkpoint("auto", tmp_path)
    shutil.rmtree(directory)
    with pytest.raises(UserError, match="no checkpoint to resume"):
        resume_checkpoint("true", tmp_path)


def test_resume_from_a_path_verifies_it(tmp_path):
    directory = run_with(tmp_path, step_0000002=fake_checkpoint(2, value=float("nan")))
    with pytest.raises(DamagedCheckpoint):
        resume_checkpoint(str(directory / "step_0000002.ckpt"), tmp_path)
    with pytest.raises(UserError, match="not found"):
        resume_checkpoint(str(tmp_path / "missing.ckpt"), tmp_path)


def test_export_refuses_a_damaged_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    save(path, fake_checkpoint(3, value=float("nan")))
    with pytest.raises(DamagedCheckpoint, match="NaN or inf"):
        export_checkpoint(path, tmp_path / "model")
    assert not (tmp_path / "model").exists()
