"""Writing files and directories so that a reader (or a crash) never sees half of one, with the
user's umask, and with one clear line when the place cannot be written."""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from elmo_train.errors import UserError


def umask() -> int:
    """This process's umask, read without changing it where Linux allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def apply_umask(directory: Path) -> None:
    """Give `directory` and everything below it the modes a plain `mkdir`/`open` would:
    `tempfile` makes 0700 and safetensors 0600, which colleagues sharing a model cannot read."""
    mask = umask()
    os.chmod(directory, 0o777 & ~mask)
    for path in directory.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_directory(directory: str | os.PathLike, marker: str, what: str) -> Iterator[Path]:
    """Yield a staging folder beside `directory` to fill; when the block ends without an error
    it gets the user's umask and is renamed into place, so a reader (or a crash) sees the old
    directory or the new one, never half of one. An existing `what` directory (one that holds
    `marker`) is replaced, anything else there is refused; a place that cannot be written is
    one line naming it."""
    directory = Path(directory)
    check_replaceable(directory, marker, what)
    staging = old = None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        yield staging
        apply_umask(staging)
        # Two renames: at every moment the old directory or the new one is whole (the old one
        # under its .old name for an instant), never a half-deleted one.
        if directory.exists():
            old = staging.with_name(staging.name + ".old")
            os.replace(directory, old)
        os.replace(staging, directory)
    except OSError as error:
        raise cannot_write(directory, error, what) from None
    finally:
        for leftover in (staging, old):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


def cannot_write(path: Path, error: OSError, what: str) -> UserError:
    """One line for an OSError met while writing `path`."""
    reason = os.strerror(error.errno) if error.errno else (error.strerror or str(error))
    return UserError(f"cannot write {what} {path} ({reason}): choose a writable location")


def writable_dir(path: str | os.PathLike, what: str) -> Path:
    """`path` created if needed (with its parents) and checked writable, or one line naming it."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a directory: give a directory path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_write(path, error, what) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(
            f"cannot write {what} {path} (permission denied): choose a writable location"
        )
    return path


def _partial(path: Path, what: str) -> Path:
    """Where `path` is written before it is renamed into place; its directory made."""
    if path.is_dir():
        raise UserError(f"{what} {path} is an existing directory: give a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_write(path, error, what) from None
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


def check_writable(path: str | os.PathLike, what: str) -> None:
    """One line now, not after the work, if `path` cannot be written."""
    path = Path(path)
    partial = _partial(path, what)
    try:
        partial.touch()
        partial.unlink()
    except OSError as error:
        raise cannot_write(path, error, what) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, what: str = "output file") -> Iterator[Path]:
    """A partial path beside `path` to write to; renamed over `path` when the block succeeds,
    removed when it fails. Writing errors (unwritable place, `path` a directory, disk full)
    become one line naming `path`."""
    path = Path(path)
    partial = _partial(path, what)
    try:
        yield partial
        os.replace(partial, path)
    except OSError as error:
        raise cannot_write(path, error, what) from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: str | bytes, what: str = "output file") -> None:
    """Write beside `path` and rename over it; text is UTF-8."""
    with atomic_path(path, what) as partial:
        if isinstance(data, str):
            partial.write_text(data, encoding="utf-8")
        else:
            partial.write_bytes(data)


def file_sha256(*paths: str | os.PathLike) -> str:
    """The sha256 of the files' bytes one after another (`sha256sum`'s for one file), read in
    1 MiB blocks."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def write_json(path: str | os.PathLike, data, what: str = "JSON file") -> Path:
    """`data` as indented JSON (UTF-8, a final newline), written atomically; returns the path."""
    write_atomic(path, json.dumps(data, indent=2) + "\n", what)
    return Path(path)


def check_replaceable(directory: Path, marker: str, what: str) -> None:
    """Only a `what` directory (it holds `marker`) or an empty one may be replaced by a new one:
    never delete a user's files."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise UserError(f"{what} {directory} is an existing file: give a directory path")
    if any(directory.iterdir()) and not (directory / marker).is_file():
        raise UserError(
            f"{directory} exists and is not a {what}: give a new or empty directory "
            "(its files are not replaced)"
        )
