"""Plain-file I/O shared by every stage: JSONL reading with precise errors, atomic appends,
and the run metadata (config, seed, versions, timings) every run writes beside its results."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any


class DataError(ValueError):
    """Bad input: the message names the file, the line and the field."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str, field: str | None = None):
        self.path, self.line, self.field = str(path), line, field
        where = f"{path}" + (f", line {line}" if line is not None else "") + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {message}")


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)``; a malformed line raises ``DataError`` naming it.
    Blank lines are skipped; a torn last line (no newline, invalid JSON) is an error too."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, "file not found")
    with path.open("r", encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, i, f"not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(path, i, f"expected a JSON object, got {type(obj).__name__}")
            yield i, obj


def require(obj: Mapping[str, Any], field: str, path: str | os.PathLike, line: int, types: type | tuple = str) -> Any:
    """``obj[field]`` checked for presence and type, else a ``DataError`` naming file/line/field."""
    if field not in obj or obj[field] is None:
        raise DataError(path, line, "missing required field", field)
    value = obj[field]
    if not isinstance(value, types):
        names = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise DataError(path, line, f"expected {names}, got {type(value).__name__}", field)
    return value


def append_jsonl(path: str | os.PathLike, obj: Mapping[str, Any]) -> None:
    """Append one record as a single ``write`` of a complete line, flushed and fsynced, so a
    killed process leaves either the whole line or nothing (never a torn line that parses)."""
    data = (json.dumps(obj, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def repair_jsonl(path: str | os.PathLike) -> int:
    """Drop a torn final line (left by a kill mid-write); return how many bytes were cut."""
    path = Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    cut = len(data) - (data.rfind(b"\n") + 1)
    with path.open("r+b") as f:
        f.truncate(len(data) - cut)
    return cut


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[IO[str]]:
    """Open a text file for writing so that it appears at ``path`` only when the block ends without
    error (temp file + rename): a reader sees the old file or the whole new one, never a part. The
    temp file is named per process and thread (two writers never share it) and removed on failure.
    Streams, so a large file (a retrieval corpus) need not be held in memory. The data is fsynced
    before the rename (else a power loss can leave the renamed file empty on some filesystems)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _drop_stale_temps(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _drop_stale_temps(path: Path) -> None:
    """Remove the temp files of ``path`` left by writers killed mid-write (their process is gone)."""
    for stale in path.parent.glob(glob.escape(path.name) + ".*-*.tmp"):
        pid = stale.name[len(path.name) + 1:].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (see ``atomic_writer``)."""
    with atomic_writer(path) as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions(packages: Iterable[str] = ("mentor", "torch", "transformers", "trl", "peft", "datasets")) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for p in packages:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


def machine() -> dict[str, Any]:
    from mentor.precision import machine

    return machine()


def run_metadata(config: Mapping[str, Any], seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """What every run writes beside its results: config, seed, versions, start time."""
    return {
        "config": dict(config),
        "seed": seed,
        "versions": versions(),
        "machine": machine(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        **extra,
    }
