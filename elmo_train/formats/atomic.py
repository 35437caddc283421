"""Writing a file so that a reader (or a crash) never sees half of it."""

import os
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write beside `path` and rename over it; text is UTF-8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    if isinstance(data, str):
        partial.write_text(data, encoding="utf-8")
    else:
        partial.write_bytes(data)
    os.replace(partial, path)
