"""Trades as Firehose records: exact JSON lines, packed within every Firehose limit."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelake.model import FIXED_LIMIT, Trade, trade_key
from tradelake.pack import (
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    MAX_RECORD_BYTES,
    MAX_TRADES_PER_RECORD,
    Record,
    batches,
    pack,
    read_line,
    trade_line,
    unpack,
)
from tradelake.schema import TRADE_COLUMNS

TS_NS = 1_795_737_600_123_456_789  # 2026-11-27T00:00:00.123456789Z


def a_trade(i: int = 0, **changes: object) -> Trade:
    trade = Trade(
        "BTCUSD",
        TS_NS + i,
        "buy",
        329_915_000_000_000,  # 32991.5
        400_000_000_000,  # 40
        0,
        TS_NS + 2_000_000,
        77 + i,
        "incremental",
    )
    return trade._replace(**changes)


def test_a_line_has_exactly_the_schema_columns_plus_symbol_in_order() -> None:
    row = json.loads(trade_line(a_trade()))
    assert list(row) == ["symbol", *(c.name for c in TRADE_COLUMNS)]


def test_a_line_is_exact_json_with_epoch_millis_and_the_trade_key() -> None:
    line = trade_line(a_trade())
    assert line == (
        '{"symbol":"BTCUSD","ts_ns":1795737600123456789,"ts":1795737600123,"side":"buy",'
        '"price":32991.5,"qty":40,"trade_key":"BTCUSD:1795737600123456789:buy:32991.5:40:0",'
        '"recv_ns":1795737600125456789,"seq":77,"source":"incremental"}\n'
    )
    row = json.loads(line, parse_float=Decimal)
    assert row["price"] == Decimal("32991.5")
    assert row["trade_key"] == trade_key(a_trade())


def test_prices_keep_all_ten_fractional_digits_without_float_rounding() -> None:
    # 0.1 + 0.2 style values and the full decimal(28,10) range survive byte for byte
    trade = a_trade(price=FIXED_LIMIT - 1, qty=3)
    line = trade_line(trade)
    assert '"price":999999999999999999.9999999999,' in line
    assert '"qty":0.0000000003,' in line
    assert read_line(line) == trade


def test_odd_strings_are_escaped_and_the_trade_key_still_matches() -> None:
    trade = a_trade(symbol='B"T\\C\n\u00e9', source="snap\tshot")
    line = trade_line(trade)
    assert line.isascii()
    assert line.count("\n") == 1
    assert json.loads(line)["trade_key"] == trade_key(trade)
    assert read_line(line) == trade


def test_ts_floors_to_the_millisecond_of_the_event() -> None:
    for ts_ns in (0, 999_999, 1_000_000, 1_999_999, 2_000_000, TS_NS):
        assert json.loads(trade_line(a_trade(ts_ns=ts_ns)))["ts"] == ts_ns // 1_000_000


def test_trades_of_one_message_share_a_tail_and_any_difference_gets_its_own() -> None:
    """``pack`` builds a tail once per run of equal (recv_ns, seq, source), a head per symbol."""
    first = a_trade()
    trades = [
        first,
        first._replace(k=1),
        first._replace(source="snapshot"),
        first._replace(seq=78),
        first._replace(recv_ns=first.recv_ns + 1),
        first._replace(symbol="sBTCUSDT"),
        first._replace(symbol="BTCUSDT", seq=78),
        first,
    ]
    (record,) = pack(trades)
    assert unpack(record.data) == trades
    assert [json.loads(line)["trade_key"] for line in record.data.decode().splitlines()] == [
        trade_key(t) for t in trades
    ]


def test_records_hold_500_trades_and_end_with_a_newline() -> None:
    trades = [a_trade(i) for i in range(1_201)]
    records = pack(trades)
    assert [r.trades for r in records] == [500, 500, 201]
    assert all(r.data.endswith(b"\n") and r.data.count(b"\n") == r.trades for r in records)
    assert unpack(b"".join(r.data for r in records)) == trades


def test_the_byte_limit_splits_a_record_before_the_count_limit() -> None:
    line_bytes = len(trade_line(a_trade()))
    records = pack([a_trade() for _ in range(10)], max_bytes=3 * line_bytes + 1)
    assert [r.trades for r in records] == [3, 3, 3, 1]


def test_a_trade_too_big_for_any_record_is_an_error() -> None:
    with pytest.raises(ValueError, match="more than a record holds"):
        pack([a_trade()], max_bytes=50)


def test_nothing_packs_into_nothing() -> None:
    assert pack([]) == []
    assert list(batches([], len)) == []


def test_batches_respect_record_count_and_bytes() -> None:
    small = [b"x"] * 1_001
    assert [len(b) for b in batches(small, len)] == [500, 500, 1]
    big = [b"x" * MAX_RECORD_BYTES] * 9  # 4 of them fit in 4 MiB
    assert [len(b) for b in batches(big, len)] == [4, 4, 1]


def test_a_bad_line_is_reported() -> None:
    with pytest.raises(ValueError, match="not a trade line"):
        read_line('{"symbol":"BTCUSD"}')
    tampered = trade_line(a_trade()).replace('"ts":1795737600123', '"ts":1795737600124')
    with pytest.raises(ValueError, match="inconsistent"):
        read_line(tampered)


TRADES = st.builds(
    Trade,
    symbol=st.sampled_from(["BTCUSD", "BTCUSDT", "sBTCUSDT"]) | st.text(max_size=8),
    ts_ns=st.integers(0, 2**63 - 1),
    side=st.sampled_from(["buy", "sell"]),
    price=st.integers(0, FIXED_LIMIT - 1),
    qty=st.integers(1, FIXED_LIMIT - 1),
    k=st.integers(0, 1_000),
    recv_ns=st.integers(0, 2**63 - 1),
    seq=st.integers(0, 2**63 - 1),
    source=st.sampled_from(["incremental", "snapshot"]),
)


@settings(max_examples=200, deadline=None)
@given(
    trades=st.lists(TRADES, max_size=1_200),
    max_trades=st.integers(1, MAX_TRADES_PER_RECORD),
    max_bytes=st.integers(700, MAX_RECORD_BYTES),
    batch_records=st.integers(1, MAX_BATCH_RECORDS),
    batch_bytes=st.integers(MAX_RECORD_BYTES, MAX_BATCH_BYTES),
)
def test_any_trades_pack_within_every_limit_and_decode_back_exactly(
    trades: list[Trade],
    max_trades: int,
    max_bytes: int,
    batch_records: int,
    batch_bytes: int,
) -> None:
    records = pack(trades, max_trades=max_trades, max_bytes=max_bytes)
    for r in records:
        assert 0 < r.trades <= max_trades
        assert len(r.data) <= max_bytes
        assert r.data.count(b"\n") == r.trades
    assert sum(r.trades for r in records) == len(trades)
    decoded = [t for r in records for t in unpack(r.data)]
    assert decoded == trades, "in order, nothing lost, nothing duplicated"

    calls = list(batches(records, lambda r: len(r.data), batch_records, batch_bytes))
    for call in calls:
        assert 0 < len(call) <= batch_records
        assert sum(len(r.data) for r in call) <= batch_bytes
    assert [r for call in calls for r in call] == records


def test_record_is_a_plain_tuple_of_bytes_and_count() -> None:
    (record,) = pack([a_trade()])
    assert record == Record(trade_line(a_trade()).encode(), 1)
