"""The local trade sink: event-hour partitions, exact decimals, Firehose-like buffers, atomicity."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelake import protocol
from tradelake.adapters.duckdb_lake import connect
from tradelake.adapters.parquet_sink import TRADE_BYTES, TRADE_SCHEMA, ParquetSink
from tradelake.cursor import Reconciler
from tradelake.markets import instrument
from tradelake.model import (
    EARLIEST_NS,
    FIXED_LIMIT,
    FIXED_SCALE,
    INCREMENTAL,
    LATEST_NS,
    SNAPSHOT,
    Trade,
    parse_fixed,
)
from tradelake.model import trade_key as key_of
from tradelake.normalise import fills
from tradelake.schema import TRADE_COLUMNS

HOUR_14 = 1_764_252_000_000_000_000  # 2025-11-27T14:00:00Z
NAME = re.compile(r"^\d{19}-[0-9a-f]{32}\.parquet$")


def trade(
    ts_ns: int = HOUR_14,
    symbol: str = "BTCUSD",
    price: int = 329_915 * 10**9,
    qty: int = 40 * 10**10,
    *,
    k: int = 0,
    recv_ns: int | None = None,
    seq: int = 7,
    source: str = INCREMENTAL,
) -> Trade:
    recv = ts_ns + 5_000_000 if recv_ns is None else recv_ns
    return Trade(symbol, ts_ns, "buy", price, qty, k, recv, seq, source)


def files(lake: Path) -> list[Path]:
    return sorted(p for p in lake.rglob("*") if p.is_file())


def exact(value: int) -> Decimal:
    return Decimal(value).scaleb(-FIXED_SCALE)


def written(lake: Path, trades: Sequence[Trade]) -> None:
    sink = ParquetSink(lake)
    sink.add(trades)
    assert sink.flush() == list(trades)


def test_partitions_by_event_hour_not_receipt_time(tmp_path: Path) -> None:
    late = HOUR_14 + 2 * 3_600_000_000_000  # received two hours later: irrelevant
    before = trade(HOUR_14 - 1, recv_ns=late)
    after = trade(HOUR_14, recv_ns=late)
    other = trade(HOUR_14 + 1, symbol="sBTCUSDT", recv_ns=HOUR_14 - 10)
    written(tmp_path, [before, after, other])

    by_dir = {p.parent.relative_to(tmp_path).as_posix(): p for p in files(tmp_path)}
    assert sorted(by_dir) == [
        "trades/symbol=BTCUSD/year=2025/month=11/day=27/hour=13",
        "trades/symbol=BTCUSD/year=2025/month=11/day=27/hour=14",
        "trades/symbol=sBTCUSDT/year=2025/month=11/day=27/hour=14",
    ]
    hour_13 = pq.read_table(by_dir["trades/symbol=BTCUSD/year=2025/month=11/day=27/hour=13"])
    assert hour_13.column("ts_ns").to_pylist() == [HOUR_14 - 1]


def test_file_has_the_schema_columns_only_snappy(tmp_path: Path) -> None:
    written(tmp_path, [trade()])
    [path] = files(tmp_path)
    assert NAME.match(path.name)
    table = pq.read_table(path, partitioning=None)
    assert table.schema.names == [c.name for c in TRADE_COLUMNS]  # no partition columns
    assert table.schema.equals(TRADE_SCHEMA)
    assert table.schema.field("price").type == pa.decimal128(28, 10)
    assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    meta = pq.ParquetFile(path).metadata
    codecs = {meta.row_group(0).column(i).compression for i in range(meta.num_columns)}
    assert codecs == {"SNAPPY"}


def test_row_values(tmp_path: Path) -> None:
    t = trade(HOUR_14 + 123_456_789, k=2, seq=99, source=SNAPSHOT)
    written(tmp_path, [t])
    [row] = pq.read_table(files(tmp_path)[0]).to_pylist()
    assert row == {
        "ts_ns": HOUR_14 + 123_456_789,
        "ts": datetime(2025, 11, 27, 14, tzinfo=UTC) + timedelta(milliseconds=123),
        "side": "buy",
        "price": Decimal("32991.5"),
        "qty": Decimal(40),
        "trade_key": "BTCUSD:1764252000123456789:buy:32991.5:40:2",
        "recv_ns": t.recv_ns,
        "seq": 99,
        "source": SNAPSHOT,
    }
    assert row["trade_key"] == key_of(t)


def test_ts_is_floor_of_ts_ns_in_ms(tmp_path: Path) -> None:
    stamps = [HOUR_14, HOUR_14 + 999_999, HOUR_14 + 1_000_000, HOUR_14 + 3_599_999_999_999]
    written(tmp_path, [trade(ts) for ts in stamps])
    table = pq.read_table(files(tmp_path)[0])
    millis = table.column("ts").cast(pa.int64()).to_pylist()
    assert millis == [ts // 1_000_000 for ts in stamps]


SPOT = instrument("sGRTUSDT")
WIDE = "12345678901234567.8901234567"
LARGEST = "9" * 18 + "." + "9" * 10
MARKET_VALUES = [
    # inverse YFIUSD: priceEp 329915000 at scale 4, 40 contracts
    ("YFIUSD", 329_915_000 * instrument("YFIUSD").price_factor, 40 * 10**10, "32991.5", "40"),
    # spot sGRTUSDT: priceEp 67562000 and qty 177500000000 at scale 8
    (
        "sGRTUSDT",
        67_562_000 * SPOT.price_factor,
        1_775 * 10**8 * SPOT.qty_factor,
        "0.67562",
        "1775",
    ),
    # USDT perpetual: decimal strings
    ("BTCUSDT", parse_fixed("20700.3"), parse_fixed("0.649"), "20700.3", "0.649"),
    # the smallest step, a value with all 28 digits, and both ends of decimal(28,10)
    ("BTCUSDT", 1, parse_fixed(WIDE), "0.0000000001", WIDE),
    ("BTCUSDT", FIXED_LIMIT - 1, 1 - FIXED_LIMIT, LARGEST, "-" + LARGEST),
]


@pytest.mark.parametrize("sample", MARKET_VALUES)
def test_exact_decimals_through_pyarrow_and_duckdb(
    tmp_path: Path, sample: tuple[str, int, int, str, str]
) -> None:
    symbol, price, qty, price_text, qty_text = sample
    written(tmp_path, [trade(symbol=symbol, price=price, qty=qty)])
    row = pq.read_table(files(tmp_path)[0]).to_pylist()[0]
    expected = (exact(price), exact(qty))
    assert (row["price"], row["qty"]) == expected
    assert expected == (Decimal(price_text), Decimal(qty_text))
    assert connect(tmp_path).execute("SELECT price, qty FROM trades").fetchall() == [expected]


VALUES = st.integers(-(FIXED_LIMIT - 1), FIXED_LIMIT - 1)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(VALUES, VALUES), min_size=1, max_size=30))
def test_any_decimal_28_10_round_trips_exactly(values: list[tuple[int, int]]) -> None:
    trades = [trade(HOUR_14 + i, price=p, qty=q) for i, (p, q) in enumerate(values)]
    with tempfile.TemporaryDirectory() as directory:
        lake = Path(directory)
        written(lake, trades)
        table = pq.read_table(files(lake)[0])
        from_arrow = list(
            zip(table.column("price").to_pylist(), table.column("qty").to_pylist(), strict=True)
        )
        from_duckdb = (
            connect(lake).execute("SELECT price, qty FROM trades ORDER BY ts_ns").fetchall()
        )
    expected = [(exact(p), exact(q)) for p, q in values]
    assert from_arrow == expected
    assert from_duckdb == expected


@pytest.mark.parametrize(
    "bad",
    [
        trade(price=FIXED_LIMIT),
        trade(price=-FIXED_LIMIT),
        trade(qty=FIXED_LIMIT * 10**20),
    ],
)
def test_overflow_raises_naming_the_trade_and_writes_nothing(tmp_path: Path, bad: Trade) -> None:
    sink = ParquetSink(tmp_path)
    good = trade(HOUR_14 - 1)  # another hour: its file would be written first
    sink.add([good, bad])
    with pytest.raises(ValueError, match=re.escape(key_of(bad))):
        sink.flush()
    assert files(tmp_path) == []
    assert sink.files_written == sink.trades_written == 0
    with pytest.raises(ValueError, match="does not fit"):
        sink.flush()  # nothing was acknowledged: the buffer still holds both


def test_flush_returns_trades_in_add_order_once(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    batches = [
        [trade(HOUR_14 + 5), trade(HOUR_14 - 5, symbol="BTCUSDT")],
        [trade(HOUR_14 - 1), trade(HOUR_14 + 6, symbol="BTCUSDT"), trade(HOUR_14 + 6, k=1)],
    ]
    for batch in batches:
        sink.add(batch)
    assert sink.flush() == batches[0] + batches[1]
    assert sink.flush() == []
    assert (sink.files_written, sink.trades_written) == (4, 5)
    assert sink.bytes_written == sum(p.stat().st_size for p in files(tmp_path))


def test_empty_flush_writes_nothing(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    assert sink.flush() == []
    assert list(tmp_path.iterdir()) == []


def test_names_are_unique_and_sort_by_first_trade(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    for ts in (HOUR_14 + 50, HOUR_14 + 10, HOUR_14 + 10):
        sink.add([trade(ts), trade(ts + 1)])
        sink.flush()
    names = [p.name for p in files(tmp_path)]
    assert len(set(names)) == 3
    assert all(NAME.match(n) for n in names)
    assert [n.split("-")[0] for n in names] == [f"{HOUR_14 + 10:019d}"] * 2 + [f"{HOUR_14 + 50}"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


def test_due_by_count(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, max_trades=3, clock=Clock())
    sink.add([trade(), trade(k=1)])
    assert not sink.due(1_000)
    sink.add([trade(k=2)])
    assert sink.due(1_000)


def test_due_by_bytes(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, max_bytes=TRADE_BYTES * 10, clock=Clock())
    sink.add([trade(k=i) for i in range(9)])
    assert not sink.due(1_000)
    sink.add([trade(k=9)])
    assert sink.due(1_000)


def test_due_by_age_of_the_oldest_buffered_trade(tmp_path: Path) -> None:
    clock = Clock()
    sink = ParquetSink(tmp_path, max_age_s=2.0, clock=clock)
    assert not sink.due(10**15)  # an empty buffer is never due
    sink.add([trade()])  # buffered at clock 1_000
    clock.now = 1_500_000_000
    sink.add([trade(k=1)])  # later trades do not reset the age
    assert not sink.due(2_000_000_999)
    assert sink.due(2_000_001_000)
    sink.flush()
    assert not sink.due(10**15)
    clock.now = 5_000_000_000
    sink.add([trade(k=2)])
    assert not sink.due(6_000_000_000)
    assert sink.due(7_000_000_000)


def test_failed_rename_leaves_no_visible_file_and_keeps_the_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = ParquetSink(tmp_path)
    trades = [trade(HOUR_14 - 1), trade(HOUR_14), trade(HOUR_14, symbol="BTCUSDT")]
    sink.add(trades)

    def refuse(src: object, dst: object) -> None:
        raise OSError("disk said no")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", refuse)
        with pytest.raises(OSError, match="disk said no"):
            sink.flush()
    assert files(tmp_path) == []  # no visible file and no temp file left behind
    assert sink.files_written == 0

    assert sink.flush() == trades  # the retry writes exactly what was kept
    assert len(files(tmp_path)) == 3
    assert all(NAME.match(p.name) for p in files(tmp_path))


LIMIT_EP = FIXED_LIMIT // 10**6
"""The exclusive bound of an inverse priceEp: decimal(28,10) at a scale of 10^4."""


@settings(max_examples=200, deadline=None)
@given(
    ts=st.one_of(
        st.integers(EARLIEST_NS - 10, LATEST_NS + 10),
        st.sampled_from([-1, 0, 2**63 - 1, 2**63, 2**64]),
    ),
    price=st.one_of(st.integers(-10, 10**14), st.sampled_from([LIMIT_EP - 1, LIMIT_EP, 2**127])),
    qty=st.one_of(st.integers(-10, 10**17), st.sampled_from([FIXED_LIMIT // 10**10, 2**64])),
    seq=st.one_of(
        st.integers(-(2**63) - 2, 2**63 + 1),
        st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1]),
    ),
)
def test_whatever_a_frame_brings_that_the_core_accepts_the_writer_writes(
    ts: int, price: int, qty: int, seq: int
) -> None:
    """No value on the wire can crash the Parquet writer: the core refuses it first."""
    row = [ts, "Buy", price, qty]
    frame = json.dumps({"sequence": seq, "symbol": "BTCUSD", "trades": [row], "type": INCREMENTAL})
    try:
        msg = protocol.parse(frame)
    except protocol.MalformedFrame:
        return
    assert isinstance(msg, protocol.TradesMessage)
    fills_, _ = fills(instrument("BTCUSD"), msg.rows)
    trades, _ = Reconciler("BTCUSD").incremental(fills_, recv_ns=LATEST_NS, seq=msg.seq)
    if not trades:
        return
    with tempfile.TemporaryDirectory() as lake:
        written(Path(lake), trades)
        [row] = connect(Path(lake)).sql("SELECT ts_ns, price, qty, seq FROM trades").fetchall()
    assert row == (ts, exact(price * 10**6), Decimal(qty), seq)
