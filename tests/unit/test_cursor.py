"""The cursor and the reconciler: dedup by count, gaps where a snapshot proves nothing, and a
cursor file that no JSON tool can round. The end-to-end property is in test_exactly_once.py.
"""

from __future__ import annotations

import json

import pytest

from tradelake.cursor import Batch, Cursor, Reconciler, SymbolCursor
from tradelake.model import EARLIEST_NS, SNAPSHOT, Fill, Gap, parse_fixed

SYMBOL = "BTCUSD"


def fill(ts: int, side: str = "buy", price: int = 10, qty: int = 1) -> Fill:
    return Fill(ts, side, price, qty)


def snapshot(*fills: Fill, recv_ns: int = 0) -> list[Batch]:
    return [Batch(fills, recv_ns, 0, SNAPSHOT)]


def test_identical_tuples_in_one_nanosecond_are_distinct_trades() -> None:
    trades, _ = Reconciler(SYMBOL).incremental([fill(5), fill(5), fill(5, "sell"), fill(5)], 0, 0)
    assert [(t.side, t.k) for t in trades] == [("buy", 0), ("buy", 1), ("sell", 0), ("buy", 2)]


def test_snapshot_at_the_cursor_nanosecond_is_reconciled_by_count() -> None:
    reconciler = Reconciler(SYMBOL)
    reconciler.incremental([fill(4), fill(5), fill(5)], 0, 0)
    # reconnect: the snapshot holds three identical fills at 5 (one arrived while away) and a 6
    trades, gaps = reconciler.reconcile(snapshot(fill(4), fill(5), fill(5), fill(5), fill(6)), 0)
    assert [(t.ts_ns, t.k, t.source) for t in trades] == [(5, 2, "snapshot"), (6, 0, "snapshot")]
    assert gaps == []
    assert reconciler.duplicates == 3


def test_a_snapshot_that_does_not_reach_the_cursor_declares_the_interval_between() -> None:
    reconciler = Reconciler(SYMBOL)
    reconciler.incremental([fill(100)], 0, 0)
    trades, gaps = reconciler.reconcile(snapshot(fill(250), fill(300)), detected_ns=7)
    assert len(trades) == 2
    assert gaps == [Gap(SYMBOL, 100, 250, 7, "snapshot_short")]


def test_a_snapshot_starting_at_the_cursor_nanosecond_declares_that_instant() -> None:
    """The cursor stopped inside nanosecond 5 (A acknowledged, the rest of it not): the
    snapshot's oldest row is at 5, so the fills of 5 that fell off it cannot be known."""
    cursor = Cursor()
    first, _ = Reconciler(SYMBOL).incremental([fill(5), fill(5), fill(5)], 0, 0)
    cursor.advance(first[:1])
    reconciler = Reconciler(SYMBOL, cursor.symbols[SYMBOL])
    trades, gaps = reconciler.reconcile(snapshot(fill(5), fill(5), fill(6)), detected_ns=9)
    assert [(t.ts_ns, t.k) for t in trades] == [(5, 1), (6, 0)]
    assert gaps == [Gap(SYMBOL, 5, 5, 9, "snapshot_short")]
    # one row older than the cursor's nanosecond proves it complete: no gap
    proven = Reconciler(SYMBOL, cursor.symbols[SYMBOL])
    _, gaps = proven.reconcile(snapshot(fill(4), fill(5), fill(5), fill(5)), detected_ns=9)
    assert gaps == []


def test_without_a_cursor_everything_before_the_first_row_is_declared() -> None:
    trades, gaps = Reconciler(SYMBOL).reconcile(snapshot(fill(EARLIEST_NS + 50)), detected_ns=3)
    assert len(trades) == 1
    assert gaps == [Gap(SYMBOL, EARLIEST_NS, EARLIEST_NS + 50, 3, "no_cursor")]


def test_incremental_fills_within_the_reconciled_snapshot_are_duplicates() -> None:
    """A snapshot cut later than the incrementals in flight: they repeat what it held."""
    reconciler = Reconciler(SYMBOL)
    reconciler.reconcile(snapshot(fill(10), fill(11), fill(11)), 0)
    trades, gaps = reconciler.incremental([fill(11), fill(11), fill(12)], 0, 0)
    assert [(t.ts_ns, t.k) for t in trades] == [(12, 0)]
    assert gaps == []
    assert reconciler.duplicates == 2


def test_fills_beyond_what_the_snapshot_held_at_its_newest_nanosecond_are_new() -> None:
    """The snapshot was cut while nanosecond 11 was being filled: it holds one of its two A."""
    reconciler = Reconciler(SYMBOL)
    reconciler.reconcile(snapshot(fill(10), fill(11), fill(11, "sell")), 0)
    trades, gaps = reconciler.incremental([fill(11), fill(11, "sell"), fill(11), fill(12)], 0, 0)
    assert [(t.ts_ns, t.side, t.k) for t in trades] == [(11, "buy", 1), (12, "buy", 0)]
    assert gaps == []
    assert reconciler.duplicates == 2


def test_a_fill_older_than_the_cursor_is_dropped_and_declared() -> None:
    reconciler = Reconciler(SYMBOL)
    reconciler.incremental([fill(100)], 0, 0)
    trades, gaps = reconciler.incremental([fill(90), fill(110)], 3, 0)
    assert [t.ts_ns for t in trades] == [110]
    assert gaps == [Gap(SYMBOL, 90, 90, 3, "out_of_order")]


def test_cursor_advances_per_symbol_to_the_newest_nanosecond_only() -> None:
    a, b = Reconciler("A"), Reconciler("B")
    ta, _ = a.incremental([fill(1), fill(2), fill(2), fill(2, "sell")], 0, 0)
    tb, _ = b.incremental([fill(7, qty=3)], 0, 0)
    cursor = Cursor()
    cursor.advance([ta[0], tb[0], *ta[1:]])
    assert cursor.symbols["A"].ts_ns == 2
    assert cursor.symbols["A"].counts == {("buy", 10, 1): 2, ("sell", 10, 1): 1}
    assert cursor.symbols["B"].counts == {("buy", 10, 3): 1}
    more, _ = a.incremental([fill(2)], 0, 0)
    cursor.advance(more)
    assert cursor.symbols["A"].counts[("buy", 10, 1)] == 3
    assert Cursor.from_json(cursor.to_json()) == cursor


def v2(entry: object, **extra: object) -> dict[str, object]:
    """A version 2 cursor with one symbol, ``BTCUSD``, holding ``entry``."""
    return {"version": 2, "symbols": {"BTCUSD": entry}, **extra}


def with_fills(*fills: object, ts_ns: object = "1625342240710279103") -> dict[str, object]:
    return v2({"ts_ns": ts_ns, "fills": list(fills)})


GOOD_FILL = ["buy", "32991.5", "40", 1]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"version": "2", "symbols": {}}, r"unsupported cursor version '2'"),
        ({"version": 2.0, "symbols": {}}, r"unsupported cursor version 2\.0"),
        ({"version": True, "symbols": {}}, r"unsupported cursor version True"),
        ({"symbols": {}}, r"unsupported cursor version None"),
        ({"version": 2, "symbols": []}, r"symbols must be an object, not list"),
        ({"version": 2}, r"symbols must be an object, not null"),
        ({"version": 2, "symbols": {}, "note": 1}, r"cursor has unknown keys \['note'\]"),
        (v2([]), r"cursor for BTCUSD must be an object"),
        (v2({"ts_ns": "1"}), r"cursor for BTCUSD needs both ts_ns and fills"),
        (v2({"ts_ns": "1", "fills": [], "k": 0}), r"cursor for BTCUSD has unknown keys \['k'\]"),
        (with_fills(ts_ns=1625342240710279103), r"BTCUSD: ts_ns must be a string .* rounded"),
        (with_fills(ts_ns=1.6e18), r"BTCUSD: ts_ns must be a string .*not float"),
        (with_fills(ts_ns="-1"), r"BTCUSD: ts_ns must be a string of decimal digits, not '-1'"),
        (with_fills(ts_ns="1.6e18"), r"BTCUSD: ts_ns .* not '1\.6e18'"),
        (with_fills(ts_ns=""), r"BTCUSD: ts_ns .* not ''"),
        (with_fills(ts_ns="０１"), r"BTCUSD: ts_ns"),  # fullwidth digits are digits to isdigit
        (with_fills(ts_ns="0123"), r"BTCUSD: ts_ns .* not '0123'"),
        (v2({"ts_ns": "1", "fills": {}}), r"BTCUSD: fills must be a list, not dict"),
        (with_fills(["buy", "1", "1"]), r"BTCUSD: fills\[0\] must be a list \[side"),
        (with_fills(("buy", "1", "1", 1)), r"BTCUSD: fills\[0\] must be a list"),  # not JSON
        (with_fills(GOOD_FILL, "x"), r"BTCUSD: fills\[1\] must be a list"),
        (with_fills(["Buy", "1", "1", 1]), r"BTCUSD: fills\[0\]: side must be 'buy' or 'sell'"),
        (with_fills(["buy", "1e3", "1", 1]), r"BTCUSD: fills\[0\]: price must be .* '1e3'"),
        (with_fills(["buy", 32991.5, "1", 1]), r"BTCUSD: fills\[0\]: price .* 32991\.5"),
        (with_fills(["buy", "32991.50", "1", 1]), r"BTCUSD: fills\[0\]: price .*'32991\.50'"),
        (with_fills(["buy", "+1", "1", 1]), r"BTCUSD: fills\[0\]: price"),
        (with_fills(["buy", "-1", "1", 1]), r"BTCUSD: fills\[0\]: price must be a positive"),
        (with_fills(["buy", "0", "1", 1]), r"BTCUSD: fills\[0\]: price must be a positive"),
        (with_fills(["buy", "-.", "1", 1]), r"BTCUSD: fills\[0\]: price"),
        (with_fills(["buy", "1" + "0" * 18, "1", 1]), r"BTCUSD: fills\[0\]: price"),
        (with_fills(["buy", "1", "0", 1]), r"BTCUSD: fills\[0\]: qty must be a positive"),
        (with_fills(["buy", "1", 40, 1]), r"BTCUSD: fills\[0\]: qty .* not 40"),
        (with_fills(["buy", "1", ".5", 1]), r"BTCUSD: fills\[0\]: qty .* not '\.5'"),
        (with_fills(["buy", "1", "1", 0]), r"BTCUSD: fills\[0\]: count must be an integer >= 1"),
        (with_fills(["buy", "1", "1", "1"]), r"BTCUSD: fills\[0\]: count .* not '1'"),
        (with_fills(["buy", "1", "1", 1.0]), r"BTCUSD: fills\[0\]: count .* not 1\.0"),
        (with_fills(["buy", "1", "1", True]), r"BTCUSD: fills\[0\]: count .* not True"),
        (with_fills(GOOD_FILL, ["buy", "32991.5", "40", 2]), r"BTCUSD: fills\[1\] repeats"),
    ],
)
def test_a_malformed_cursor_is_refused_with_a_reason(data: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Cursor.from_json(data)  # type: ignore[arg-type]  # JSON of any shape


def test_a_version_1_cursor_is_refused_with_what_to_do() -> None:
    old = {"version": 1, "symbols": {"BTCUSD": {"ts_ns": 1625342240710279103, "fills": []}}}
    with pytest.raises(ValueError, match="version 1 is no longer read") as refused:
        Cursor.from_json(old)
    assert "move the cursor aside" in str(refused.value)
    assert "declares everything before its first trade" in str(refused.value)


def test_the_cursor_json_is_version_2_with_integers_only_and_ts_ns_as_a_string() -> None:
    cursor = Cursor(
        {
            "BTCUSD": SymbolCursor(
                1625342240710279103,
                {("buy", parse_fixed("32991.5"), parse_fixed("40")): 1, ("sell", 1, 1): 3},
            ),
            "sBTCUSDT": SymbolCursor(1625342240710279104, {}),
        }
    )
    data = cursor.to_json()
    assert data == {
        "version": 2,
        "symbols": {
            "BTCUSD": {
                "ts_ns": "1625342240710279103",
                "fills": [["buy", "32991.5", "40", 1], ["sell", "0.0000000001", "0.0000000001", 3]],
            },
            "sBTCUSDT": {"ts_ns": "1625342240710279104", "fills": []},
        },
    }
    text = json.dumps(data)
    # what a JSON tool that reads every number as a double does to it changes nothing
    assert json.loads(text, parse_int=lambda n: int(float(n))) == data
    assert not any(type(n) is float for n in numbers(json.loads(text)))
    assert all(abs(n) <= 2**53 for n in numbers(json.loads(text)))
    assert Cursor.from_json(json.loads(text)) == cursor


def numbers(value: object) -> list[int | float]:
    """Every JSON number in ``value``, however deep."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []


def test_the_example_cursor_of_the_readme_reads() -> None:
    example = (
        '{"version": 2, "symbols": {"BTCUSD": {"ts_ns": "1625342240710279103",'
        ' "fills": [["buy", "32991.5", "40", 1]]}}}'
    )
    cursor = Cursor.from_json(json.loads(example))
    assert cursor.symbols["BTCUSD"] == SymbolCursor(
        1625342240710279103, {("buy", parse_fixed("32991.5"), parse_fixed("40")): 1}
    )
    assert cursor.to_json() == json.loads(example)


def test_merge_takes_the_newer_position_of_each_symbol() -> None:
    old, new = Cursor(), Cursor()
    a, b = Reconciler("A"), Reconciler("B")
    first, _ = a.incremental([fill(1), fill(2)], 0, 0)
    old.advance(first)
    later, _ = a.incremental([fill(2), fill(3)], 0, 0)
    new.advance(first + later)
    only_b, _ = b.incremental([fill(9)], 0, 0)
    old.advance(only_b)
    merged = old.merge(new)
    assert merged.symbols["A"].ts_ns == 3
    assert merged.symbols["B"].ts_ns == 9
    assert new.merge(old) == merged
    same_ns, _ = Reconciler("A").incremental([fill(3), fill(3)], 0, 0)
    wider = Cursor()
    wider.advance(same_ns)
    assert merged.merge(wider).symbols["A"].counts == {("buy", 10, 1): 2}
