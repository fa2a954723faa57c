"""The simulator's tape: a deterministic, realistic synthetic market; tapes rebuilt from files."""

from __future__ import annotations

import gzip
import itertools
import random
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tradelake import protocol
from tradelake.markets import Market, instrument
from tradelake.model import FIXED_ONE, SNAPSHOT, Fill, format_fixed
from tradelake.normalise import fills
from tradelake.simulator import load_tape, synthetic_tape
from tradelake.simulator.wire import (
    NotOnWire,
    encode_rows,
    garbage,
    trades_message,
    unreadable,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "phemex"
START = 1_700_000_000 * 10**9
HOUR = 3600 * 10**9
MARKETS = ("BTCUSD", "BTCUSDT", "sBTCUSDT")


@pytest.fixture(scope="module")
def tape() -> dict[str, list[Fill]]:
    return synthetic_tape((*MARKETS, "ETHUSD", "XRPUSDT", "sFOOUSDT"), START, HOUR, seed=7)


def test_same_seed_same_tape_and_symbols_do_not_disturb_each_other() -> None:
    a = synthetic_tape(["BTCUSD", "sBTCUSDT"], START, HOUR // 10, seed=3)
    b = synthetic_tape(["sBTCUSDT", "BTCUSD", "BTCUSDT"], START, HOUR // 10, seed=3)
    c = synthetic_tape(["BTCUSD"], START, HOUR // 10, seed=4)
    assert a["BTCUSD"] == b["BTCUSD"]
    assert a["sBTCUSDT"] == b["sBTCUSDT"]
    assert a["BTCUSD"] != c["BTCUSD"]


def test_every_symbol_is_ordered_in_range_and_at_the_asked_rate(
    tape: dict[str, list[Fill]],
) -> None:
    for symbol, fills_ in tape.items():
        ts = [f.ts_ns for f in fills_]
        assert ts == sorted(ts), symbol
        assert ts[0] >= START, symbol
        assert ts[-1] < START + HOUR, symbol
        assert 3 * 3600 * 0.85 < len(fills_) < 3 * 3600 * 1.15, symbol
        assert all(f.side in ("buy", "sell") and f.price > 0 and f.qty > 0 for f in fills_)


def test_btc_trades_on_phemex_ticks_and_lots(tape: dict[str, list[Fill]]) -> None:
    tick = {"BTCUSD": FIXED_ONE // 2, "BTCUSDT": FIXED_ONE // 10, "sBTCUSDT": FIXED_ONE // 100}
    for symbol in MARKETS:
        prices = [f.price for f in tape[symbol]]
        assert all(p % tick[symbol] == 0 for p in prices), symbol
        assert min(prices) > 50_000 * FIXED_ONE, symbol
        assert max(prices) < 70_000 * FIXED_ONE, symbol
        assert len({p // tick[symbol] for p in prices}) > 100, "the price should move"
    contracts = [f.qty // FIXED_ONE for f in tape["BTCUSD"]]
    assert all(f.qty % FIXED_ONE == 0 for f in tape["BTCUSD"])
    assert min(contracts) == 1
    assert max(contracts) <= 5000
    assert Counter(contracts).most_common(1)[0][1] < len(contracts) / 4, "sizes should vary"
    perp = [f.qty for f in tape["BTCUSDT"]]
    assert all(q % (FIXED_ONE // 1000) == 0 for q in perp)
    assert min(perp) == FIXED_ONE // 1000
    assert max(perp) < 3 * FIXED_ONE
    spot = [f.qty for f in tape["sBTCUSDT"]]
    assert all(q % (FIXED_ONE // 10**6) == 0 for q in spot)
    assert any(q % (FIXED_ONE // 10**5) for q in spot), "spot sizes use all six decimals"


def test_the_awkward_cases_are_there(tape: dict[str, list[Fill]]) -> None:
    for symbol, fills_ in tape.items():
        groups: dict[int, list[Fill]] = {}
        for f in fills_:
            groups.setdefault(f.ts_ns, []).append(f)
        sweeps = [g for g in groups.values() if len({f.price for f in g}) >= 3]
        identical = [g for g in groups.values() if max(Counter(g).values()) >= 2]
        assert len(sweeps) > 20, symbol
        assert len(identical) > 20, symbol
        gaps = sorted(b.ts_ns - a.ts_ns for a, b in itertools.pairwise(fills_))
        positive = [g for g in gaps if g]
        assert positive[len(positive) // 10] < 10**8, f"{symbol}: no bursts of rapid trades"


@pytest.mark.parametrize("symbol", ["ETHUSD", "XRPUSDT", "sFOOUSDT", *MARKETS])
def test_every_fill_survives_the_wire_exactly(tape: dict[str, list[Fill]], symbol: str) -> None:
    inst = instrument(symbol)
    rows = encode_rows(inst, tape[symbol])
    back, bad = fills(inst, rows)
    assert (back, bad) == (tape[symbol], 0)
    row_types = {type(v) for row in rows[:50] for v in row[2:]}
    assert row_types == ({str} if inst.market is Market.PERPETUAL else {int})


def test_a_fill_finer_than_the_wire_scale_is_refused() -> None:
    with pytest.raises(NotOnWire):
        encode_rows(instrument("BTCUSD"), [Fill(START, "buy", 60000 * FIXED_ONE, FIXED_ONE // 2)])


@pytest.mark.parametrize("symbol", MARKETS)
def test_garbage_never_carries_a_readable_trade(symbol: str) -> None:
    inst = instrument(symbol)
    rng = random.Random(1)
    real = trades_message(
        inst, encode_rows(inst, [Fill(START, "buy", FIXED_ONE, FIXED_ONE)]), "x", 1
    )
    for _ in range(300):
        frame = garbage(rng, inst, 5, START, real)
        try:
            msg = protocol.parse(frame)
        except protocol.MalformedFrame:
            continue
        assert isinstance(msg, protocol.TradesMessage), frame
        good, bad = fills(inst, msg.rows)
        assert good == [], frame
        assert bad == len(msg.rows) > 0, frame


@pytest.mark.parametrize("symbol", ["ETHUSD", "XRPUSDT", "sFOOUSDT", *MARKETS])
def test_unreadable_breaks_every_row(tape: dict[str, list[Fill]], symbol: str) -> None:
    """What a bad snapshot carries: as many rows as a real one, and not one readable."""
    inst = instrument(symbol)
    rows = encode_rows(inst, tape[symbol][:200])
    broken = unreadable(random.Random(2), rows)
    assert len(broken) == len(rows)
    assert fills(inst, broken) == ([], len(rows))
    assert len({orjson.dumps(row) for row in broken}) > 100, "broken in many ways"


def test_load_tape_reads_the_real_fixture_files() -> None:
    """Snapshots are reversed and reconciled, stale incrementals dropped, as the capture would."""
    inverse = load_tape(FIXTURES / "trade_inverse.jsonl")
    assert {s: len(f) for s, f in inverse.items()} == {
        "YFIUSD": 1000 + 4,
        "XTZUSD": 1000 + 1,
        "ATOMUSD": 2,
        "XMRUSD": 1,
        "BTCUSD": 4 + 2,
        "LINKUSD": 2,
    }
    yfi = inverse["YFIUSD"]
    assert yfi[0] == Fill(1625336046019059001, "sell", 32965 * FIXED_ONE, 10 * FIXED_ONE)
    assert yfi[-1] == Fill(1625342268665200079, "buy", 32999 * FIXED_ONE, 24 * FIXED_ONE)
    spot = load_tape(FIXTURES / "trade_spot.jsonl")
    assert len(spot["sGRTUSDT"]) == 1000 + 4
    # 4 snapshot rows, 1 incremental, a later snapshot's 3 rows; the stale incremental is dropped
    assert len(spot["sBTCUSDT"]) == 4 + 1 + 3
    assert spot["sGRTUSDT"][-1] == Fill(
        1625342262554355488, "buy", 67501 * FIXED_ONE // 10**5, 3595 * FIXED_ONE // 10
    )
    perp = load_tape(FIXTURES / "trade_perp.jsonl")
    assert [format_fixed(f.price) for f in perp["BTCUSDT"]] == ["20700.3", "23800.4"]
    assert [format_fixed(f.qty) for f in perp["XRPUSDT"]] == ["244.65"]
    for t in (inverse, spot, perp):
        for symbol, fills_ in t.items():
            assert [f.ts_ns for f in fills_] == sorted(f.ts_ns for f in fills_), symbol


def test_load_tape_rebuilds_a_gzip_recording_exactly(tmp_path: Path) -> None:
    """Reconnect snapshots overlap what was already seen; garbage and replies lie in between."""
    truth = synthetic_tape(MARKETS, START, HOUR // 20, seed=11)
    records: list[dict[str, object]] = []

    def record(text: str) -> None:
        records.append({"recv_ns": START + len(records), "frame": text})

    for symbol, fills_ in truth.items():
        inst = instrument(symbol)
        rows = encode_rows(inst, fills_)
        # batches end on a nanosecond boundary, as the simulator and Phemex cut them
        cuts = [i for i in range(1, len(rows)) if rows[i][0] != rows[i - 1][0] and i % 7 == 0]
        record('{"error":null,"id":1,"result":{"status":"success"}}')
        for n, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(rows)], strict=True)):
            if n % 5 == 4:  # a reconnect: the snapshot reaches back over rows already seen
                record(trades_message(inst, rows[max(0, b - 200) : b][::-1], SNAPSHOT, n))
            else:
                record(trades_message(inst, rows[a:b], "incremental", n))
            if n % 11 == 0:
                record('{"sequence":1,"symbol"')
    path = tmp_path / "capture.jsonl.gz"
    with gzip.open(path, "wb") as out:
        out.writelines(orjson.dumps(r) + b"\n" for r in records)
    assert load_tape(path) == truth
    plain = tmp_path / "capture.jsonl"
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    assert load_tape(plain) == truth


def test_load_tape_refuses_a_file_that_is_not_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text('{"foo": 1}\nthis is not a tape\n')
    with pytest.raises(ValueError, match=r"notes\.txt:2"):
        load_tape(path)
