"""``tradelake simulate``: serve a synthetic or recorded market on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
import time

from tradelake.simulator.server import Faults, Simulator, SimulatorConfig, serve
from tradelake.simulator.tape import NS_PER_SECOND, load_tape, synthetic_tape

DEFAULT_PORT = 8765
DEFAULT_SYMBOLS = ("BTCUSD", "BTCUSDT", "sBTCUSDT", "s1INCHUSDT")
"""One market of each type, and a spot symbol whose base begins with a digit."""
HISTORY_S = 3600
"""Synthetic market before 'now', so the first subscribe already gets a full snapshot."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``tradelake simulate``, checked by the CLI's shared validators."""
    from tradelake.cli import count_arg, port_arg, positive_arg, symbols_arg

    p.add_argument("--port", type=port_arg, default=DEFAULT_PORT, help="0 picks a free port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--symbols",
        type=symbols_arg,
        default=None,
        help=f"comma-separated (default {','.join(DEFAULT_SYMBOLS)}; with --tape: a subset)",
    )
    p.add_argument("--tape", help="replay a recording (tradelake capture --record) or raw JSONL")
    p.add_argument(
        "--compression", type=positive_arg, default=1.0, help="event seconds per wall second"
    )
    p.add_argument("--snapshot-size", type=count_arg, default=200, metavar="N")
    p.add_argument("--faults", action="store_true", help="inject every fault (Faults.chaos)")
    p.add_argument("--seed", type=int, default=0, help="seeds the synthetic market and faults")
    p.add_argument(
        "--rate", type=positive_arg, default=3.0, help="synthetic trades per second a symbol"
    )
    p.add_argument(
        "--hours", type=positive_arg, default=24.0, help="synthetic market length after now"
    )


def simulate(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; a tape that cannot be read is one line and exit 2."""
    start_ns: int | None = None
    if args.tape:
        try:
            tape = load_tape(args.tape)
        except (OSError, ValueError) as exc:
            print(f"tradelake simulate: cannot read --tape {args.tape}: {exc}", file=sys.stderr)
            return 2
        if args.symbols:
            missing = sorted(set(args.symbols) - set(tape))
            if missing:
                print(
                    f"tradelake simulate: not in {args.tape}: {','.join(missing)} "
                    f"(it has {','.join(sorted(tape))})",
                    file=sys.stderr,
                )
                return 2
            tape = {s: tape[s] for s in args.symbols}
    else:
        start_ns = time.time_ns()
        history_ns = HISTORY_S * NS_PER_SECOND
        duration_ns = history_ns + int(args.hours * 3600 * NS_PER_SECOND)
        symbols = args.symbols or list(DEFAULT_SYMBOLS)
        tape = synthetic_tape(symbols, start_ns - history_ns, duration_ns, args.seed, args.rate)
    config = SimulatorConfig(
        snapshot_size=args.snapshot_size,
        compression=args.compression,
        faults=Faults.chaos(args.seed) if args.faults else Faults(),
        port=args.port,
        start_ns=start_ns,
        host=args.host,
    )
    stats = serve(tape, config, on_ready=_announce)
    print(f"\nstopped: {stats}", file=sys.stderr)
    return 0


def _announce(sim: Simulator) -> None:
    # a recorded tape is old, and compressed market time runs ahead of the clock: either way
    # the capture's live trade-time window would refuse the rows
    live = sim.config.compression == 1 and sim.config.start_ns is not None
    print(
        f"Phemex simulator on {sim.url} serving {', '.join(sim.symbols)} "
        f"at {sim.config.compression:g}x market time"
        f"{' with faults' if sim.config.faults != Faults() else ''}; Ctrl-C stops.\n"
        f"  capture it: tradelake capture --url {sim.url} --symbols {','.join(sim.symbols)}"
        f"{'' if live else ' --replay'}",
        file=sys.stderr,
        flush=True,
    )
