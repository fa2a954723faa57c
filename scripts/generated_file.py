"""The command line of every script that writes a committed, generated file.

``python scripts/X.py`` rewrites the file when it differs; ``--check`` only says whether it is up
to date (the infra tests run that), so packaging needs no Python step and a stale file fails CI.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(script: str, target: Path, render: Callable[[], str], argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=f"write {target.relative_to(ROOT)}")
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = render()
    current = target.read_text() if target.exists() else None
    if args.check:
        if current != text:
            print(f"{target.relative_to(ROOT)} is out of date: run python scripts/{script}")
            return 1
        return 0
    if current != text:
        target.write_text(text)
        print(f"wrote {target.relative_to(ROOT)}")
    return 0
