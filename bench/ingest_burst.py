"""The ingest Lambda handler under a burst: its peak memory and CPU time, in a process of its own.

Three processes, so that each one's usage is its own:

- ``serve``: the bundled simulator (``tradelake.simulator.Simulator``, real websockets on
  127.0.0.1) playing BTCUSD live: an hour of history at ``CALM_RATE`` for the first snapshot,
  ``CALM_S`` seconds at that rate, then ``--rate`` trades a second for ``--seconds``, in frames
  of about ``TRADES_PER_FRAME`` trades;
- ``handler``: one invocation of the REAL ``functions/ingest/handler.py``, cold start included,
  with its real ``FirehoseSink`` around a client that records every PutRecordBatch, and in-memory
  S3 and SSM (moto would put its own hundreds of MiB into the peak). The handler has no X-Ray
  SDK tracer (Lambda's active tracing needs none in the process), so none is imported here;
- the parent (``run``): starts both, reads the handler's ``ru_maxrss`` and CPU time with
  ``wait4``, and the CPU time the handler spent inside the calm and the burst windows from the
  samples it took of its own ``getrusage``, with the frames it had received by then.

The CPU a burst takes depends on how many trades a frame carries: Phemex sends a message per
match (1-4 trades), which a Python simulator cannot do at 5,000 trades a second on a shared
machine. So the burst runs twice, in the simulator's 20 ms batches and in batches as small as
it manages, and the two give the cost of a trade and of a frame (``cpu = trades·a +
frames·b``), from which ``run.py`` predicts the burst in live-shaped frames.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_fakes import RecordingFirehose
from measure import ROOT, Background, free_port, python, run_child

SYMBOL = "BTCUSD"
CALM_RATE = 5.0
"""BTCUSD's assumed steady rate (trades a second), the cost model's too."""
CALM_S = 20.0
LEAD_S = 8.0
"""Wall seconds from the simulator's start to the calm window: the handler's cold start."""
TAIL_S = 5.0
NS = 1_000_000_000
BATCHES_MS = (20.0, 0.2)
"""The simulator's batch interval in the two runs: its default, and as small as it gets."""


def tape(start_ns: int, rate: float, seconds: float) -> tuple[dict[str, list[Any]], int]:
    """History, lead and calm at ``CALM_RATE``, the burst at ``rate``, a calm tail; the burst's
    number of trades."""
    from market import market

    calm_end = start_ns + int((LEAD_S + CALM_S) * NS)
    burst_end = calm_end + int(seconds * NS)
    history = market(SYMBOL, start_ns - 3600 * NS, 3600 + LEAD_S + CALM_S, CALM_RATE, seed=3)
    burst = market(SYMBOL, calm_end, seconds, rate, seed=4)
    tail = market(SYMBOL, burst_end, TAIL_S, CALM_RATE, seed=5)
    return {SYMBOL: history + burst + tail}, len(burst)


def serve(args: argparse.Namespace) -> None:
    """Serve the tape live (market time is wall time) until terminated; print its size."""
    from tradelake.simulator import Simulator, SimulatorConfig

    fills, burst = tape(args.start_ns, args.rate, args.seconds)
    batch_s = args.batch_ms / 1000
    config = SimulatorConfig(port=args.port, start_ns=time.time_ns(), batch_interval=batch_s)
    with Simulator(fills, config):
        print(burst, flush=True)
        threading.Event().wait()


@dataclass
class MemoryS3:
    """The checkpoint and the gap objects, in memory; counts PUTs."""

    objects: dict[str, bytes] = field(default_factory=dict)
    puts: int = 0

    def get_object(self, **kwargs: Any) -> Mapping[str, Any]:
        from botocore.exceptions import ClientError

        key = kwargs["Key"]
        if key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": key}}, "GetObject")
        import io

        return {"Body": io.BytesIO(self.objects[key])}

    def put_object(self, **kwargs: Any) -> Mapping[str, Any]:
        self.puts += 1
        self.objects[kwargs["Key"]] = bytes(kwargs["Body"])
        return {}


class SwitchedOn:
    def get_parameter(self, **kwargs: Any) -> Mapping[str, Any]:
        return {"Parameter": {"Value": "on"}}


@dataclass
class Context:
    """What Powertools and the handler read from a Lambda context."""

    deadline: float
    function_name: str = "tradelake-bench-ingest"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:bench"
    aws_request_id: str = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.time()) * 1000))


class CountingConnection:
    """The real websocket connection, counting the frames it receives."""

    def __init__(self, conn: Any, frames: list[int]) -> None:
        self.conn, self.frames = conn, frames

    def recv(self, timeout_s: float) -> str | bytes | None:
        frame: str | bytes | None = self.conn.recv(timeout_s)
        self.frames[0] += frame is not None
        return frame

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def handler(args: argparse.Namespace) -> None:
    """One invocation of the ingest handler; its counts as JSON in ``--json``."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "tradelake/bench",
            "TRADELAKE_SYMBOLS": SYMBOL,
            "PHEMEX_URL": args.url,
            "DELIVERY_STREAM": "bench",
            "DATA_BUCKET": "bench",
            "CURSOR_KEY": "_state/cursor.json",
            "INGEST_SWITCH_PARAMETER": "/tradelake/bench/ingest",
            "SAFETY_MARGIN_S": "1",
            "METRICS_INTERVAL_S": "60",
        }
    )
    start = args.start_ns / NS
    windows = {
        "calm": (start + LEAD_S, start + LEAD_S + CALM_S),
        "burst": (start + LEAD_S + CALM_S, start + LEAD_S + CALM_S + args.seconds),
    }
    samples: dict[str, tuple[float, int]] = {}
    frames = [0]

    def sample() -> None:
        for name, (begin, end) in windows.items():
            for edge, at in (("begin", begin), ("end", end)):
                time.sleep(max(0.0, at - time.time()))
                samples[f"{name}_{edge}"] = (cpu_s(), frames[0])

    threading.Thread(target=sample, daemon=True).start()
    spec = importlib.util.spec_from_file_location(
        "ingest_handler", ROOT / "functions" / "ingest" / "handler.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cold_start_cpu_s = cpu_s()
    firehose, s3 = RecordingFirehose(), MemoryS3()

    def connect(url: str, timeout_s: float) -> CountingConnection:
        return CountingConnection(module.websocket_source.connect(url, timeout_s), frames)

    deadline = windows["burst"][1] + TAIL_S + 1.0  # + SAFETY_MARGIN_S
    out = module.handler(
        {"cursor": None},
        Context(deadline),
        connect=connect,
        firehose=firehose,
        s3=s3,
        ssm=SwitchedOn(),
    )
    windows_seen = [name for name in windows if f"{name}_end" in samples]
    cpu = {
        name: (samples[f"{name}_end"][0] - samples[f"{name}_begin"][0])
        / (windows[name][1] - windows[name][0])
        for name in windows_seen
    }
    result = {
        "cold_start_cpu_s": cold_start_cpu_s,
        "cpu_per_wall_s": cpu,
        "burst_frames": samples["burst_end"][1] - samples["burst_begin"][1],
        "firehose": firehose.counts(),
        "s3_puts": s3.puts,
        "frames": frames[0],
        "continue": out["continue"],
    }
    Path(args.json).write_text(json.dumps(result))


def run(rate: float = 5000.0, seconds: float = 30.0) -> dict[str, Any]:
    """Both framings (``BATCHES_MS``); the second run's figures, both runs, and the fit."""
    runs = [one(rate, seconds, batch_ms) for batch_ms in BATCHES_MS]
    (f1, c1), (f2, c2) = ((r["burst_frames"], r["burst_cpu_s"]) for r in runs)
    trades = runs[0]["burst_trades"]
    per_frame = (c2 - c1) / (f2 - f1) if f2 != f1 else 0.0
    per_trade = (c1 - f1 * per_frame) / trades
    return {
        **runs[-1],
        "max_rss_mib": max(r["max_rss_mib"] for r in runs),
        "framings": [
            {k: r[k] for k in ("batch_ms", "burst_frames", "burst_trades", "burst_cpu_s")}
            for r in runs
        ],
        "cpu_per_trade_s": per_trade,
        "cpu_per_frame_s": per_frame,
    }


def one(rate: float, seconds: float, batch_ms: float) -> dict[str, Any]:
    """One handler invocation against one simulator; see the module docstring."""
    import tempfile

    port = free_port()
    start_ns = time.time_ns() + int(15 * NS)  # the simulator builds its tape first
    common = ["--port", str(port), "--start-ns", str(start_ns), "--batch-ms", str(batch_ms)]
    common += ["--rate", str(rate), "--seconds", str(seconds)]
    server = Background(python("ingest_burst.py", "serve", *common))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "handler.json"
            url = f"ws://127.0.0.1:{port}"
            usage = run_child(
                python("ingest_burst.py", "handler", *common, "--url", url, "--json", str(out))
            )
            if usage.returncode != 0:
                raise RuntimeError(f"the ingest handler failed:\n{usage.stderr[-3000:]}")
            result: dict[str, Any] = json.loads(out.read_text())
    finally:
        server.stop()
    log_lines = usage.stdout.splitlines()
    result.update(
        {
            "rate": rate,
            "seconds": seconds,
            "batch_ms": batch_ms,
            "burst_trades": int(server.ready),
            "burst_cpu_s": result["cpu_per_wall_s"]["burst"] * seconds,
            "calm_rate": CALM_RATE,
            "calm_s": CALM_S,
            "wall_s": usage.wall_s,
            "cpu_s": usage.cpu_s,
            "max_rss_mib": usage.max_rss_mib,
            "log_bytes": len(usage.stdout.encode()),
            "log_lines": len(log_lines),
            "emf_lines": sum('"_aws"' in line for line in log_lines),
        }
    )
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("mode", choices=("serve", "handler"))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--start-ns", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--batch-ms", type=float, required=True)
    p.add_argument("--url")
    p.add_argument("--json")
    args = p.parse_args()
    if args.mode == "serve":
        serve(args)
    else:
        handler(args)


if __name__ == "__main__":
    main()
