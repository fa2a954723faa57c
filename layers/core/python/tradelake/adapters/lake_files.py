"""Small durable files in the local lake: the cursor and the gap ledger, written atomically.

A reader (DuckDB, a restarted capture) must never see half a file: every file is written under a
hidden temporary name in its final directory, fsynced, then renamed into place with
``os.replace``, which is atomic on POSIX file systems. The temporary name starts with ``.`` (Athena
and Hive skip such files) and ends in ``.tmp``, because DuckDB's globs do not skip hidden files:
``*.parquet`` and ``*.jsonl`` must not match it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from uuid import uuid4

from tradelake.cursor import Cursor
from tradelake.model import Gap
from tradelake.schema import GAP_COLUMNS

STATE_DIR = "_state"
GAPS_DIR = "gaps"

_GAP_TYPES: dict[str, type] = {"bigint": int, "string": str}


def stage(path: Path, data: bytes | memoryview) -> Path:
    """Write ``data`` durably under a hidden temporary name next to ``path``; return that name.

    ``path``'s directory is created durably first (``make_directories``), so once ``publish``
    returns, the file survives a power loss along with every directory leading to it.
    """
    make_directories(path.parent)
    staged = path.with_name(f".{path.name}.{uuid4().hex[:8]}.tmp")
    try:
        with staged.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged


def publish(staged: Path, path: Path) -> None:
    """Rename a staged file into place, then fsync its directory so the rename survives a crash."""
    os.replace(staged, path)
    fsync_directory(path.parent)


def make_directories(directory: Path) -> None:
    """Create ``directory`` and its missing ancestors so that they survive a power loss.

    A new directory's entry lives in its parent, and ``mkdir`` does not make that durable:
    after a crash a new partition directory, and the fsynced Parquet file renamed into it, can
    be gone while the cursor saved afterwards says the file exists. So each level is created on
    its own and the parent of every created level is fsynced, deepest first, up to and
    including the first ancestor that already existed. An existing ``directory`` costs one stat.
    """
    created: list[Path] = []
    level = directory
    while not level.is_dir():
        created.append(level)
        level = level.parent
    for new in reversed(created):
        new.mkdir(exist_ok=True)  # exist_ok: another writer may create it at the same time
    for new in created:
        fsync_directory(new.parent)


def lake_problem(lake: Path) -> str | None:
    """Why ``lake`` is not a lake to read, or None: any directory is one, an empty one is empty."""
    if lake.is_dir():
        return None
    if lake.exists():
        return f"{lake} is a file, not a lake directory: give --lake the directory of a lake"
    return f"no lake at {lake}/: give --lake the directory a capture wrote (or run tradelake demo)"


def writable_lake_problem(lake: Path) -> str | None:
    """Why a capture cannot write into ``lake``, or None: creates it, writes and removes a probe."""
    try:
        make_directories(lake)
        probe = lake / f".probe-{uuid4().hex[:8]}.tmp"
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as exc:
        blocker = next((p for p in (lake, *lake.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"{blocker} is a file, not a directory: give --lake a directory (e.g. lake)"
        reason = exc.strerror or str(exc)
        return (
            f"cannot write into {lake}/ ({reason}): give --lake a directory you can write to,"
            " or fix its permissions"
        )
    return None


def fsync_directory(directory: Path) -> None:
    """Make the entries of ``directory`` (new files, renames, subdirectories) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never a mix."""
    staged = stage(path, data)
    try:
        publish(staged, path)
    finally:
        staged.unlink(missing_ok=True)


class FileCursorStore:
    """The cursor as ``<lake>/_state/cursor.json``: the local twin of the S3 checkpoint."""

    def __init__(self, lake: Path) -> None:
        self.path = lake / STATE_DIR / "cursor.json"

    def load(self) -> Cursor:
        """The saved cursor, or an empty one for a lake that has never been written."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return Cursor()
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            return Cursor.from_json(data)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise ValueError(
                f"cursor file {self.path} is corrupt ({exc}). Restore it from a backup, or move it"
                " aside to start without a cursor: the next snapshot is then written in full"
                " (duplicates carry the same trade_key) and everything before it is declared as"
                " a gap (no_cursor)."
            ) from exc

    def save(self, cursor: Cursor) -> None:
        write_atomically(self.path, json.dumps(cursor.to_json(), indent=1).encode())


class JsonlGapLedger:
    """Declared gaps as JSON Lines under ``<lake>/gaps/``, one new file per ``record`` call.

    Files are never appended to, so a crash cannot leave a torn line, and the ``gaps`` view in
    DuckDB (and a Glue table in S3) reads them all with one glob. Names start with the earliest
    ``detected_ns`` so that listing order is detection order.
    """

    def __init__(self, lake: Path) -> None:
        self.directory = lake / GAPS_DIR

    def record(self, gaps: Sequence[Gap]) -> None:
        if gaps:
            write_atomically(self.directory / gap_file_name(gaps), gap_lines(gaps))


def gap_file_name(gaps: Sequence[Gap]) -> str:
    """``<earliest detected_ns, 19 digits>-<uuid4 hex>.jsonl``: listing order is detection order."""
    first = min(gap.detected_ns for gap in gaps)
    return f"{first:019d}-{uuid4().hex}.jsonl"


def gap_lines(gaps: Sequence[Gap]) -> bytes:
    """Gaps as JSON Lines with the ``GAP_COLUMNS`` (the local files and the S3 objects alike)."""
    return "".join(
        json.dumps({c.name: getattr(gap, c.name) for c in GAP_COLUMNS}) + "\n" for gap in gaps
    ).encode()


def read_gaps(lake: Path) -> list[Gap]:
    """Every gap recorded in the lake, in detection order; raises ValueError at a bad line."""
    gaps: list[Gap] = []
    for path in sorted((lake / GAPS_DIR).glob("*.jsonl")):
        gaps += parse_gap_lines(path.read_text(), str(path))
    return gaps


def parse_gap_lines(text: str, where: str) -> list[Gap]:
    """The gaps of one JSON Lines file or object; ``where`` names it in a ValueError."""
    gaps: list[Gap] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            values = [row[c.name] for c in GAP_COLUMNS]
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{where}:{number}: not a gap record ({exc!r})") from exc
        for column, value in zip(GAP_COLUMNS, values, strict=True):
            if type(value) is not _GAP_TYPES[column.type]:
                raise ValueError(f"{where}:{number}: {column.name} is not a {column.type}")
        gaps.append(Gap(**{c.name: v for c, v in zip(GAP_COLUMNS, values, strict=True)}))
    return gaps
