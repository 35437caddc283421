"""A directory written whole or not at all, with the user's umask (model and tagger directories)."""

import os
import stat

import pytest

from elmo_train.errors import UserError
from elmo_train.formats.atomic import atomic_directory


def modes(directory) -> dict[str, int]:
    found = {".": stat.S_IMODE(directory.stat().st_mode)}
    for path in sorted(directory.rglob("*")):
        found[str(path.relative_to(directory))] = stat.S_IMODE(path.stat().st_mode)
    return found


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_everything_below_gets_the_umask_not_tempfiles_0700(tmp_path, umask_027):
    target = tmp_path / "out"
    with atomic_directory(target, "card.json", "tagger directory") as staging:
        (staging / "card.json").write_text("{}")
        (staging / "bilm").mkdir()
        (staging / "bilm" / "weights.hdf5").write_bytes(b"x")
        os.chmod(staging / "bilm" / "weights.hdf5", 0o600)  # as safetensors writes its files
    assert modes(target) == {
        ".": 0o750,
        "bilm": 0o750,
        "bilm/weights.hdf5": 0o640,
        "card.json": 0o640,
    }


def test_a_failure_inside_keeps_the_old_directory_and_leaves_no_staging(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "card.json").write_text("old")
    with (
        pytest.raises(RuntimeError),
        atomic_directory(target, "card.json", "tagger directory") as staging,
    ):
        (staging / "card.json").write_text("new")
        raise RuntimeError("killed half-way")
    assert (target / "card.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_finished_block_replaces_a_directory_of_its_kind(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "card.json").write_text("old")
    (target / "stale.txt").write_text("from the old one")
    with atomic_directory(target, "card.json", "tagger directory") as staging:
        (staging / "card.json").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["card.json"]
    assert (target / "card.json").read_text() == "new"


def test_another_kind_of_directory_is_never_replaced(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("a user's file")
    with pytest.raises(UserError, match="is not a tagger directory"):
        with atomic_directory(target, "card.json", "tagger directory"):
            pass
    assert (target / "notes.txt").read_text() == "a user's file"
