"""S3 keys → catalog partitions: the layout the writers use is the layout the catalog reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradelake.catalog import (
    SHOWN_KEY_CHARS,
    Added,
    Failure,
    NotAPartitionError,
    Partition,
    Route,
    batched,
    default_routes,
    partition_of,
    read_event,
    register,
)
from tradelake.partitions import NS_PER_HOUR, partition_prefix

ROUTES = default_routes("trades")
BUCKET = "lake-bucket"


def notification(
    *keys: str, bucket: str = BUCKET, name: str = "ObjectCreated:Put"
) -> dict[str, Any]:
    """An S3 → Lambda notification; keys are URL-encoded as S3 sends them."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": name,
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="/")}},
            }
            for key in keys
        ]
    }


KEY = "trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/trades-1-2026-11-27-14-a1b2.parquet"
PARTITION = Partition(
    "trades",
    ("BTCUSD", "2026", "11", "27", "14"),
    f"s3://{BUCKET}/trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/",
)


def test_a_trades_key_is_its_partition_in_key_order() -> None:
    assert partition_of(KEY, ROUTES, f"s3://{BUCKET}/") == PARTITION


def test_the_trades_route_takes_the_configured_table_name() -> None:
    p = partition_of(KEY, default_routes("trades_v2"))
    assert p.table == "trades_v2"
    assert p.location == "trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/"


def test_rollup_keys_are_not_routed_by_default() -> None:
    """The rollup job registers its partitions itself (tradelake.rollup), not the notification."""
    key = "rollups/ohlcv_1m/symbol=sBTCUSDT/year=2026/month=01/day=31/hour=00/20260131_x"
    with pytest.raises(NotAPartitionError, match="not under a known table prefix"):
        partition_of(key, ROUTES)


def test_a_placeholder_route_names_the_table_after_the_segment() -> None:
    routes = (Route("rollups/{name}", "rollups_{name}"),)
    key = "rollups/ohlcv_1m/symbol=sBTCUSDT/year=2026/month=01/day=31/hour=00/20260131_x"
    p = partition_of(key, routes)
    assert p.table == "rollups_ohlcv_1m"
    assert p.values == ("sBTCUSDT", "2026", "01", "31", "00")
    assert p.location == "rollups/ohlcv_1m/symbol=sBTCUSDT/year=2026/month=01/day=31/hour=00/"


def test_the_first_matching_route_wins() -> None:
    routes = (Route("rollups/ohlcv_1m", "ohlcv_1m"), Route("rollups/{name}", "rollups_{name}"))
    key = "rollups/ohlcv_1m/symbol=BTCUSD/year=2026/month=01/day=31/hour=00/part-0"
    assert partition_of(key, routes).table == "ohlcv_1m"


def test_a_route_can_have_its_own_partition_keys() -> None:
    routes = (Route("rollups/daily", "daily", ("symbol", "year", "month", "day")),)
    p = partition_of("rollups/daily/symbol=BTCUSD/year=2026/month=02/day=28/f", routes)
    assert p.values == ("BTCUSD", "2026", "02", "28")


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("gaps/1795791983766134378-5206.jsonl", "not under a known table prefix"),
        ("errors/format-conversion-failed/2026/11/27/14/x", "not under a known table prefix"),
        ("_state/cursor.json", "not under a known table prefix"),
        ("tradesX/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/f", "not under a known"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/f", "found 4 levels"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/extra/f", "found 6 levels"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=14", "found 4 levels"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/", "directory marker"),
        ("trades/year=2026/symbol=BTCUSD/month=11/day=27/hour=14/f", "is not symbol="),
        ("trades/symbol=BTCUSD/yr=2026/month=11/day=27/hour=14/f", "is not year="),
        ("trades/symbol=BTCUSD/year2026/month=11/day=27/hour=14/f", "is not year="),
        ("trades/symbol=BTC$USD/year=2026/month=11/day=27/hour=14/f", "bad symbol"),
        ("trades/symbol=/year=2026/month=11/day=27/hour=14/f", "bad symbol"),
        ("trades/symbol=BTCUSD/year=26/month=11/day=27/hour=14/f", "bad year"),
        ("trades/symbol=BTCUSD/year=2026/month=13/day=27/hour=14/f", "bad month"),
        ("trades/symbol=BTCUSD/year=2026/month=00/day=27/hour=14/f", "bad month"),
        ("trades/symbol=BTCUSD/year=2026/month=1/day=27/hour=14/f", "bad month"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=32/hour=14/f", "bad day"),
        ("trades/symbol=BTCUSD/year=2026/month=02/day=30/hour=14/f", "no such date"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=24/f", "bad hour"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=14\n/f", "bad hour"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/.f.parquet.1a2b.tmp", "hidden"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/_SUCCESS", "hidden"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/f.tmp", "temporary"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=14_$folder$", "found 4 levels"),
        ("rollups/OHLCV/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/f", "not under a known"),
        ("rollups/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/f", "not under a known"),
        ("", "not under a known table prefix"),
    ],
)
def test_a_key_that_is_not_a_partition_path_says_why(key: str, reason: str) -> None:
    with pytest.raises(NotAPartitionError, match=reason.replace("$", r"\$")):
        partition_of(key, ROUTES)


symbols = st.from_regex(r"[a-z]?[A-Z0-9]{2,31}", fullmatch=True)  # Phemex: sBTCUSDT, BTCUSD
hours = st.integers(0, 8000 * 365 * 24 - 1)  # every hour of years 1970-9999
file_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ._=+%-]{0,60}", fullmatch=True).filter(
    lambda n: not n.endswith(".tmp")
)


@given(symbol=symbols, hour=hours, file_name=file_names)
def test_any_key_the_writers_produce_parses_back_to_its_values(
    symbol: str, hour: int, file_name: str
) -> None:
    """The sink's ``partition_prefix`` and the catalog agree, through S3's URL-encoding too."""
    prefix = partition_prefix(symbol, hour * NS_PER_HOUR)
    event = notification(f"{prefix}/{file_name}")
    found = read_event(event, ROUTES)
    t = datetime.fromtimestamp(hour * 3600, tz=UTC)
    assert found.skipped == ()
    assert found.partitions == (
        Partition(
            "trades",
            (symbol, f"{t.year:04d}", f"{t.month:02d}", f"{t.day:02d}", f"{t.hour:02d}"),
            f"s3://{BUCKET}/{prefix}/",
        ),
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
s3_like = st.fixed_dictionaries(
    {
        "Records": st.lists(
            st.fixed_dictionaries(
                {
                    "eventName": st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete"])
                    | json_values,
                    "s3": st.fixed_dictionaries(
                        {
                            "bucket": st.fixed_dictionaries({"name": st.text(max_size=10)})
                            | json_values,
                            "object": st.fixed_dictionaries({"key": st.text(max_size=80)})
                            | json_values,
                        }
                    )
                    | json_values,
                }
            )
            | json_values,
            max_size=5,
        )
        | json_values
    }
)


@given(event=s3_like | json_values)
def test_garbage_never_raises(event: Any) -> None:
    found = read_event(event, ROUTES)
    records = event.get("Records") if isinstance(event, dict) else None
    n = len(records) if isinstance(records, list) else 0
    assert len(found.partitions) + len(found.skipped) <= n


@given(key=st.text(st.characters(exclude_categories=("Cs",)), max_size=120))
def test_any_text_key_is_a_partition_or_skipped(key: str) -> None:
    found = read_event(notification(key), ROUTES)
    assert len(found.partitions) + len(found.skipped) == 1


HOUR_14 = "year=2026/month=11/day=27/hour=14"


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (f"trades/symbol=../{HOUR_14}/f.parquet", "bad symbol '..'"),
        (f"trades/symbol=../../{HOUR_14}/f.parquet", "found 6 levels"),
        (f"trades/symbol=BTCUSD/../symbol=ETHUSD/{HOUR_14}/f.parquet", "found 7 levels"),
        (f"trades/symbol=btcusd/{HOUR_14}/f.parquet", "bad symbol 'btcusd'"),
        (f"trades/symbol=sbtcUSDT/{HOUR_14}/f.parquet", "bad symbol"),
        (f"trades/symbol=ＢＴＣＵＳＤ/{HOUR_14}/f.parquet", "bad symbol"),  # full-width
        (f"trades/symbol=BTCUSDé/{HOUR_14}/f.parquet", "bad symbol"),
        (f"trades/symbol=B/{HOUR_14}/f.parquet", "bad symbol 'B'"),
        (f"trades/symbol={'X' * 33}/{HOUR_14}/f.parquet", "bad symbol"),
        (f"trades/symbol=BTC USD/{HOUR_14}/f.parquet", "bad symbol 'BTC USD'"),  # '+' in S3's
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=99/f.parquet", "bad hour '99'"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=1a/f.parquet", "bad hour"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=١٤/f.parquet", "bad hour"),
        ("trades/symbol=BTCUSD/year=20x6/month=11/day=27/hour=14/f.parquet", "bad year"),
        ("trades/symbol=BTCUSD/year=2026/month=ab/day=27/hour=14/f.parquet", "bad month"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=-1/hour=14/f.parquet", "bad day"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=+14/f.parquet", "bad hour"),
        (f"/trades/symbol=BTCUSD/{HOUR_14}/f.parquet", "not under a known table prefix"),
        (f"Trades/symbol=BTCUSD/{HOUR_14}/f.parquet", "not under a known table prefix"),
        (f"trades//symbol=BTCUSD/{HOUR_14}/f.parquet", "found 6 levels"),
        (f"firehose/trades/symbol=BTCUSD/{HOUR_14}/f.parquet", "not under a known table"),
        (f"rollups/ohlcv_1m/symbol=BTCUSD/{HOUR_14}/f.parquet", "not under a known table"),
        (f"trades/symbol=BTCUSD/{HOUR_14}/{'f' * 1100}.parquet", "a key of 1163 bytes"),
        (f"trades/symbol=BTCUSD/{HOUR_14}/{'é' * 520}.parquet", "a key of 1103 bytes"),
    ],
)
def test_a_hostile_key_is_skipped_with_its_reason_and_the_rest_kept(key: str, reason: str) -> None:
    """Each odd key, URL-encoded as S3 sends it, between two good ones: skipped, never raised,
    never registered, and the good keys' partitions are all there."""
    other = KEY.replace("hour=14", "hour=13")
    found = read_event(notification(KEY, key, other), ROUTES)
    assert [p.values[-1] for p in found.partitions] == ["14", "13"]
    [skipped] = found.skipped
    assert reason in skipped.reason
    assert len(skipped.key) <= SHOWN_KEY_CHARS + 1


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        ("trades/symbol%3D..%2F..%2Fx/year%3D2026/month%3D11/day%3D27/hour%3D14/f", "levels"),
        ("trades/symbol%253DBTCUSD/year=2026/month=11/day=27/hour=14/f", "is not symbol="),
        ("trades/symbol=BTC%00USD/year=2026/month=11/day=27/hour=14/f", "bad symbol"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=1%ZZ/f", "bad hour '1%ZZ'"),
        ("trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=14%0A/f", "bad hour"),
        ("trades/symbol=" + "%41" * 400 + "/year=2026/month=11/day=27/hour=14/f", "bad symbol"),
    ],
)
def test_keys_are_decoded_once_and_checked_after(encoded: str, reason: str) -> None:
    """What the encoding can smuggle — a '/', a second '%3D', a NUL, a bad escape — is judged
    on the decoded key."""
    event = notification(KEY)
    event["Records"][0]["s3"]["object"]["key"] = encoded
    [skipped] = read_event(event, ROUTES).skipped
    assert reason in skipped.reason


def test_an_event_holds_each_partition_once_in_first_seen_order() -> None:
    other = KEY.replace("hour=14", "hour=13")
    found = read_event(notification(KEY, other, KEY.replace("a1b2", "c3d4"), other, KEY), ROUTES)
    assert [p.values[-1] for p in found.partitions] == ["14", "13"]
    assert found.skipped == ()


def test_keys_are_url_decoded() -> None:
    event = notification(KEY)
    assert "%3D" in event["Records"][0]["s3"]["object"]["key"]
    spaced = KEY.replace("a1b2", "a b")
    encoded = notification(spaced)["Records"][0]["s3"]["object"]["key"]
    assert "+" in encoded
    assert read_event(notification(spaced), ROUTES).partitions == (PARTITION,)


def test_the_same_partition_in_two_buckets_is_two_partitions() -> None:
    event = notification(KEY)
    event["Records"] += notification(KEY, bucket="other")["Records"]
    assert [p.location[:12] for p in read_event(event, ROUTES).partitions] == [
        "s3://lake-bu",
        "s3://other/t",
    ]


def test_malformed_records_and_other_events_are_skipped_with_a_reason() -> None:
    event = notification(KEY, "gaps/1-2.jsonl")
    event["Records"] += notification(KEY, name="ObjectRemoved:Delete")["Records"]
    event["Records"] += [{"s3": {"bucket": {}}}, "junk", {"s3": {"bucket": {"name": 1}}}]
    found = read_event(event, ROUTES)
    assert found.partitions == (PARTITION,)
    assert [s.reason for s in found.skipped] == [
        "not under a known table prefix",
        "event 'ObjectRemoved:Delete' is not an object creation",
        "not an S3 notification record",
        "not an S3 notification record",
        "not an S3 notification record",
    ]
    assert [s.key for s in found.skipped][:2] == ["gaps/1-2.jsonl", KEY]


def test_the_s3_test_event_holds_nothing() -> None:
    event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}
    assert read_event(event, ROUTES) == ((), ())


class RecordingCatalog:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Partition]]] = []

    def add_partitions(self, table: str, partitions: Sequence[Partition]) -> Added:
        self.calls.append((table, list(partitions)))
        failed = tuple(Failure(p, "AccessDeniedException", "no") for p in partitions[2:])
        return Added(min(len(partitions), 2) - 1, 1, failed)


def test_register_calls_the_catalog_once_per_table_and_totals() -> None:
    rollup = Partition("rollups_ohlcv_1m", PARTITION.values, "s3://b/rollups/ohlcv_1m/…/")
    other = PARTITION._replace(values=(*PARTITION.values[:4], "15"))
    third = PARTITION._replace(values=(*PARTITION.values[:4], "16"))
    catalog = RecordingCatalog()
    added = register([PARTITION, rollup, other, third], catalog)
    assert catalog.calls == [("trades", [PARTITION, other, third]), ("rollups_ohlcv_1m", [rollup])]
    assert added.created == 1
    assert added.existing == 2
    assert [f.partition for f in added.failed] == [third]


def test_register_nothing_calls_nothing() -> None:
    catalog = RecordingCatalog()
    assert register([], catalog) == Added(0, 0, ())
    assert catalog.calls == []


@given(n=st.integers(0, 350), size=st.integers(1, 120))
def test_batched_keeps_order_and_respects_the_size(n: int, size: int) -> None:
    items = list(range(n))
    batches = list(batched(items, size))
    assert [x for b in batches for x in b] == items
    assert all(1 <= len(b) <= size for b in batches)
    assert len(batches) == -(-n // size)


def test_batched_refuses_a_size_below_one() -> None:
    with pytest.raises(ValueError, match="positive"):
        list(batched([1], 0))
