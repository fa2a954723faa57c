"""``make bench``: every measurement of issue 10, then docs/BENCHMARKS.md and the table.

Runs ``hotpath.py`` (the hot path against cryptofeed) and ``compaction.py`` as they are, each
writing its JSON, and the measurements of this directory, the heavy ones in child processes so
that their peak memory is their own. The raw results are kept in ``$BENCH_WORK/results.json``;
``--only`` reruns some parts and takes the others from there (for working on one part; ``make
bench`` runs all).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cost
import firehose_packing
import ingest_burst
import loopback
import render
import rollup_10m
import sizing
from measure import BENCH, ROOT, python, run_child

TEMPLATE = ROOT / ".serverless" / "cloudformation-template-update-stack.json"
OUT = ROOT / "docs" / "BENCHMARKS.md"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""

    def field(path: str, key: str) -> str:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":" if path.startswith("/proc") else "=")
            if name.strip() == key:
                return value.strip().strip('"')
        return "unknown"

    return {
        "cpu": field("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "ram_gib": int(field("/proc/meminfo", "MemTotal").split()[0]) / 1024**2,
        "python": platform.python_version(),
        "os": f"{field('/etc/os-release', 'PRETTY_NAME')}, Linux {platform.release()}",
        "load_average": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def json_script(script: str, *args: str) -> dict[str, Any] | None:
    """Run ``bench/<script> ... --json OUT`` and return OUT, or None (said why) if it failed."""
    if not (BENCH / script).exists():
        print(f"bench: {script} is missing: its section is left as a hook", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        usage = run_child(python(script, *args, "--json", str(out)), timeout_s=3600)
        if usage.returncode != 0 or not out.exists():
            print(f"bench: {script} failed ({usage.returncode}):\n{usage.stderr[-2000:]}")
            return None
        result: dict[str, Any] = json.loads(out.read_text())
        return result


PARTS: dict[str, Callable[[], Any]] = {
    "hotpath": lambda: json_script("hotpath.py", "--trades", "1000000", "--repeat", "5"),
    "compaction": lambda: json_script("compaction.py"),
    "firehose": firehose_packing.run,
    "loopback": loopback.run,
    "rollup": rollup_10m.run,
    "ingest": ingest_burst.run,
}


def derive(raw: dict[str, Any], template: Path) -> dict[str, Any]:
    """The raw results plus the memory choice and the cost model."""
    burst = raw["ingest"]
    live = (raw.get("hotpath") or {}).get("workloads", {}).get("live")
    per_frame = live["trades"] / live["messages"] if live else sizing.LIVE_TRADES_PER_FRAME
    stack = cost.read_template(template)
    lines = cost.model(stack, cost.measured_from(raw))
    return {
        **raw,
        "live_trades_per_frame": per_frame,
        "sizing": sizing.size(burst["max_rss_mib"], sizing.live_burst_cpu(burst, per_frame)),
        "cost": {"stack": stack, "lines": lines, "levers": cost.levers(stack, raw)},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--only", help=f"comma-separated parts to run: {','.join(PARTS)}")
    p.add_argument("--template", type=Path, default=TEMPLATE)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    keep = rollup_10m.work_dir() / "results.json"
    only = args.only.split(",") if args.only else list(PARTS)
    unknown = set(only) - set(PARTS)
    if unknown:
        p.error(f"unknown parts: {','.join(sorted(unknown))}")
    if not args.template.exists():
        p.error(f"{args.template} is missing: run `make package` first")
    raw: dict[str, Any] = json.loads(keep.read_text()) if args.only and keep.exists() else {}
    raw["machine"] = machine()
    for name in only:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        raw[name] = PARTS[name]()
        print(f"bench: {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    keep.parent.mkdir(parents=True, exist_ok=True)
    keep.write_text(json.dumps(raw, indent=1))
    missing = [n for n in ("firehose", "loopback", "rollup", "ingest") if n not in raw]
    if missing:
        print(f"bench: no results for {', '.join(missing)}: run them first", file=sys.stderr)
        return 1
    results = derive(raw, args.template)
    args.out.write_text(render.document(results))
    print(render.console(results))
    print(f"bench: wrote {args.out.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
