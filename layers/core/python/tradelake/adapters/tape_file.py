"""``tradelake capture --record``: every raw frame with its receipt time, as gzipped JSON lines.

The file is a tape that ``tradelake simulate --tape`` replays: record live once, test offline
forever. Frames are kept verbatim (text, not re-serialised) so a replay sees what Phemex sent.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from types import TracebackType

import orjson


class TapeRecorder:
    """Appends ``{"recv_ns": …, "frame": "…"}`` lines to a gzip file; close it to finish it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.frames = 0
        self._file = gzip.open(path, "ab", compresslevel=6)  # noqa: SIM115 (lives with self)

    def write(self, recv_ns: int, frame: str | bytes) -> None:
        text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
        self._file.write(orjson.dumps({"recv_ns": recv_ns, "frame": text}) + b"\n")
        self.frames += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TapeRecorder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
