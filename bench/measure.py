"""Run a measurement in a child process and read its own resource usage from the kernel.

Peak memory is the child's ``ru_maxrss`` from ``wait4``: what that process alone held, not the
bench's. The child's output goes to files (a pipe would need reading while it runs).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


@dataclass(frozen=True)
class Usage:
    """A finished child: exit code, wall and CPU seconds, peak RSS in MiB, its output."""

    returncode: int
    wall_s: float
    cpu_s: float
    max_rss_mib: float
    stdout: str
    stderr: str


def python(script: str, *args: str) -> list[str]:
    """The command running ``bench/<script>`` with this interpreter."""
    return [sys.executable, str(BENCH / script), *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_child(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout_s: float = 1800.0
) -> Usage:
    """Run ``argv`` to its end (killed after ``timeout_s``) and return its usage.

    Through a small launcher (this file run as a script): Linux hands a child the peak RSS of
    the process it was forked from, so a child of the bench itself, which holds hundreds of MiB
    of workloads, would report the bench's peak, not its own.
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as tmp,
    ):
        report = Path(tmp) / "usage.json"
        launcher = [sys.executable, "-S", __file__, str(report), str(timeout_s), *argv]
        subprocess.run(launcher, stdout=out, stderr=err, env=dict(env or os.environ), check=False)
        out.seek(0)
        err.seek(0)
        usage = json.loads(report.read_text())
        return Usage(
            returncode=usage["returncode"],
            wall_s=usage["wall_s"],
            cpu_s=usage["cpu_s"],
            max_rss_mib=usage["max_rss_kib"] / 1024,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def launch(report: str, timeout_s: float, argv: Sequence[str]) -> None:
    """The launcher: run ``argv`` (output inherited), write its usage to ``report``."""
    start = time.monotonic()
    proc = subprocess.Popen(argv)
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > timeout_s:
            proc.send_signal(signal.SIGKILL)
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    usage = {
        "returncode": proc.returncode,
        "wall_s": time.monotonic() - start,
        "cpu_s": rusage.ru_utime + rusage.ru_stime,
        "max_rss_kib": rusage.ru_maxrss,
    }
    Path(report).write_text(json.dumps(usage))


class Background:
    """A helper process (a simulator) started before a measurement and stopped after it.

    It is ready once it prints a line on ``stream`` (``stdout`` or ``stderr``), the first such
    line is ``ready``; the rest is drained, so that a full pipe never blocks it.
    """

    def __init__(self, argv: Sequence[str], stream: str = "stdout") -> None:
        pipe, other = subprocess.PIPE, subprocess.DEVNULL
        self.proc = subprocess.Popen(
            argv,
            stdout=pipe if stream == "stdout" else other,
            stderr=pipe if stream == "stderr" else other,
            text=True,
        )
        out = self.proc.stdout if stream == "stdout" else self.proc.stderr
        assert out is not None
        self.ready = out.readline().strip()
        if not self.ready:
            self.stop()
            raise RuntimeError(f"{' '.join(argv)} exited before it was ready")
        threading.Thread(target=out.read, daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":
    launch(sys.argv[1], float(sys.argv[2]), sys.argv[3:])
