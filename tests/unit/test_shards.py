"""Shards of at most 20 symbols, stable: adding a symbol moves no other one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradelake.shards import SHARD_SIZE, cursor_key, shard_count, shard_of, shards

SYMBOL = st.from_regex(r"[A-Z]{2,6}USDT?", fullmatch=True)
SYMBOLS = st.lists(SYMBOL, min_size=1, max_size=90, unique=True)
SIZE = st.integers(8, 20)  # smaller sizes need ever more shards to fit (birthday problem)


def assignment(symbols: list[str], size: int = SHARD_SIZE) -> dict[str, int]:
    return {s: i for i, shard in enumerate(shards(symbols, size)) for s in shard}


@given(SYMBOLS, SIZE)
def test_every_symbol_is_in_one_shard_of_at_most_size(symbols: list[str], size: int) -> None:
    split = shards(symbols, size)
    assert sorted(s for shard in split for s in shard) == sorted(symbols)
    assert all(len(shard) <= size for shard in split)
    assert len(split) == shard_count(symbols, size) >= -(-len(symbols) // size)


@given(SYMBOLS, SYMBOL, SIZE)
def test_adding_a_symbol_moves_no_other_while_the_count_stays(
    symbols: list[str], added: str, size: int
) -> None:
    before, after = assignment(symbols, size), assignment([*symbols, added], size)
    if shard_count(symbols, size) == shard_count([*symbols, added], size):
        assert {s: after[s] for s in before} == before


@given(SYMBOLS, SYMBOL, SIZE)
def test_when_the_count_grows_symbols_only_move_into_the_new_shards(
    symbols: list[str], added: str, size: int
) -> None:
    """Rendezvous hashing: no symbol moves between two shards that exist before and after."""
    before, after = assignment(symbols, size), assignment([*symbols, added], size)
    count = shard_count(symbols, size)
    assert all(after[s] == before[s] or after[s] >= count for s in before)


@given(SYMBOLS)
def test_order_and_duplicates_do_not_matter(symbols: list[str]) -> None:
    assert shards([*reversed(symbols), *symbols]) == shards(symbols)


def test_a_symbol_s_shard_depends_on_it_and_the_count_only() -> None:
    assert shard_of("BTCUSD", 1) == 0
    assert [shard_of("BTCUSD", n) for n in (3, 3)] == [shard_of("BTCUSD", 3)] * 2
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("BTCUSD", 0)


def test_the_default_symbols_are_one_shard_and_45_symbols_three() -> None:
    assert shards(["BTCUSD", "BTCUSDT", "sBTCUSDT"]) == (("BTCUSD", "BTCUSDT", "sBTCUSDT"),)
    assert shard_count(FORTY_FIVE) == 3


FORTY_FIVE = [
    f"{coin}USDT"
    for coin in str.split(
        "BTC ETH XRP SOL ADA DOGE DOT LINK LTC BCH TRX AVAX MATIC UNI ATOM XLM ETC FIL APT ARB "
        "OP NEAR ICP AAVE SAND MANA AXS EOS XTZ THETA ALGO EGLD FTM GRT HBAR KSM MKR NEO QNT "
        "RUNE SNX SUSHI VET XMR ZEC"
    )
]


@pytest.mark.parametrize(
    ("base", "shard", "key"),
    [
        ("_state/cursor.json", 0, "_state/cursor.json"),
        ("_state/cursor.json", 2, "_state/cursor-2.json"),
        ("_state/cursor", 1, "_state/cursor-1"),
        ("_state.d/cursor", 1, "_state.d/cursor-1"),
    ],
)
def test_each_shard_has_its_cursor_key_and_shard_0_keeps_the_old_one(
    base: str, shard: int, key: str
) -> None:
    assert cursor_key(base, shard) == key
