"""The per-frame work of a capture, sans I/O: frames in; trades, gaps and requests out.

``Feed`` owns no socket, clock or file (ARCHITECTURE.md §5, the h11 habit): the capture loop
hands it each frame with its receipt time, calls ``tick`` when a deadline passes, and sends the
requests it returns. The websocket loop (in the CLI and in the Lambda) and the property tests
drive this same object.

A subscription's snapshot is the reference point of everything after it. Per symbol and
connection:

- after a subscribe, the symbol's incrementals are HELD (at most ``max_held_fills``) until its
  snapshot comes; the snapshot and the held incrementals are then reconciled as one view
  (``union``), so an incremental that overtook its snapshot is neither lost nor doubled, and no
  incremental moves the position before the snapshot is reconciled. What a subscription held
  when it was renewed (or its connection died) is kept as a bridge: if the new snapshot reaches
  back into it, it extends the view, and only the time before it is declared;
- a snapshot that does not come within ``snapshot_timeout_s``, or comes empty or with no valid
  row, is asked for again: unsubscribe and subscribe that symbol. Until the new subscription is
  acknowledged its incrementals belong to the old one and are dropped (the new snapshot covers
  them, or the gap before it is declared);
- after ``snapshot_attempts`` subscribes without a usable snapshot the feed takes the trades as
  they come and declares the interval from the cursor to the first of them (``snapshot_missing``);
- once live, a snapshot is ignored (the incrementals are contiguous; a stale snapshot reconciled
  now could move the position past trades still in flight), and an incremental fill at or before
  the newest row of the reconciled snapshot is a duplicate (``Reconciler.covered_ns``).

A subscribe Phemex refuses is retried with backoff; ``max_subscribe_errors`` refusals in a row
(counted across reconnects, reset by a success) give up that symbol only: one error line naming
symbol and method, ``CaptureStats.rejected``, and the others go on.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from tradelake import hotpath, protocol
from tradelake.cursor import Batch, Cursor, Reconciler
from tradelake.markets import Instrument
from tradelake.model import INCREMENTAL, SNAPSHOT, Fill, Gap, Trade
from tradelake.normalise import fills

log = logging.getLogger(__name__)

NEVER: Final = math.inf
_UNBOUNDED: Final = 1 << 100
"""A row age or lead that is no bound: ``fills`` clips every window to ``ANY_TIME``."""
_SUBSCRIBE, _UNSUBSCRIBE = "subscribe", "unsubscribe"


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """How patient the feed is with Phemex; defaults suit the live exchange."""

    snapshot_timeout_s: float = 5.0
    """A subscription's snapshot is due this long after the subscribe."""
    snapshot_attempts: int = 3
    """Subscribes per connection without a usable snapshot before the feed gives up on it."""
    max_held_fills: int = 100_000
    """Incremental fills held per symbol while its snapshot is awaited; past it, give up."""
    max_subscribe_errors: int = 5
    max_row_age_s: float | None = 86_400.0
    """A row this much older than its receipt is bad; None accepts any age (a replayed tape)."""
    max_row_lead_s: float | None = 60.0
    """A row this much ahead of its receipt is bad; None for a simulator running faster."""


@dataclass(slots=True)
class SymbolStats:
    received: int = 0
    written: int = 0
    duplicates: int = 0
    gaps: int = 0
    bad_rows: int = 0
    resubscribes: int = 0
    """Subscribes sent again because no usable snapshot came."""


@dataclass(slots=True)
class CaptureStats:
    """Counters for the status line, the summary and the metrics."""

    symbols: dict[str, SymbolStats] = field(default_factory=dict)
    frames: int = 0
    trade_messages: int = 0
    malformed_frames: int = 0
    unknown_frames: int = 0
    connections: int = 0
    connect_failures: int = 0
    reconnects: int = 0
    dead_connections: int = 0
    subscribe_errors: int = 0
    flushes: int = 0
    last_lag_ns: int = 0
    """Receipt time minus exchange time of the newest trade received."""
    peak_lag_ns: int = 0
    """The largest ``last_lag_ns`` since its reader (the status callback) set it back to 0: a
    backlog read in a few milliseconds is not missed between two samples."""
    rejected: dict[str, str] = field(default_factory=dict)
    """Symbols given up after refusals in a row, with Phemex's reason."""

    @property
    def received(self) -> int:
        return sum(s.received for s in self.symbols.values())

    @property
    def written(self) -> int:
        return sum(s.written for s in self.symbols.values())

    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.symbols.values())

    @property
    def gaps(self) -> int:
        return sum(s.gaps for s in self.symbols.values())


class Output(NamedTuple):
    """What one frame or tick produced: trades for the sink, gaps to declare, requests to send."""

    trades: Sequence[Trade] = ()
    gaps: Sequence[Gap] = ()
    requests: Sequence[str] = ()
    lines: bytes | None = None
    """The trades' JSON lines (``pack.trade_line`` each), when the compiled path wrote them."""


NOTHING: Final = Output()
_new = tuple.__new__
"""Builds an ``Output`` of trades without the Python-level ``__new__``: once per frame."""


class _Lane(NamedTuple):
    """One symbol's instrument, rows key, reconciler and counters.

    The compiled ``live_frame`` reads these fields by position: keep their order.
    """

    instrument: Instrument
    rows_key: str
    reconciler: Reconciler
    stats: SymbolStats
    factors: tuple[int, int] | None


@dataclass(slots=True)
class _Subscription:
    """One symbol on the current connection."""

    request_id: int
    deadline: float
    """When the snapshot is overdue, or (``retry``) when to subscribe again after a refusal."""
    live: bool = False
    accepting: bool = True
    """Frames belong to this subscription: false after a resubscribe until Phemex answers its
    unsubscribe or its subscribe (frames before that belong to the old subscription)."""
    unsubscribe_id: int | None = None
    retry: bool = False
    tries: int = 0
    gave_up: bool = False
    held: list[Batch] = field(default_factory=list)
    held_fills: int = 0
    bridge: list[Batch] = field(default_factory=list)
    """The previous subscription's run of incrementals: it may join the new snapshot."""


class Feed:
    """Subscriptions, snapshot discipline and reconciliation for every symbol of a capture."""

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        cursor: Cursor,
        config: FeedConfig | None = None,
        *,
        retry_delay: Callable[[int], float] = lambda refusals: 1.0,
    ) -> None:
        """``retry_delay(n)``: the wait before subscribing again after refusal n (0-based)."""
        self.config = config or FeedConfig()
        self.instruments = dict(instruments)
        self.retry_delay = retry_delay
        self.stats = CaptureStats(symbols={s: SymbolStats() for s in instruments})
        self._lanes = {
            s: _Lane(
                i,
                i.rows_key,
                Reconciler(s, cursor.symbols.get(s)),
                self.stats.symbols[s],
                i.factors,
            )
            for s, i in self.instruments.items()
        }
        """What a trade message of each symbol needs, found with one look-up per frame."""
        self._live: dict[str, _Lane] = {}
        """The lanes of the symbols whose subscription is live: the compiled path's only ones."""
        self._live_frame = hotpath.compiled.live_frame if hotpath.compiled else None
        self._subs: dict[str, _Subscription] = {}
        self._timed: set[str] = set()
        """Symbols whose subscription has a deadline (all others: ``NEVER``), so that ``due``,
        asked on every turn of the capture loop, looks at the few still waiting, not at all."""
        self._pending: dict[int, tuple[str, str]] = {}
        self._refusals: Counter[str] = Counter()
        self._request_id = 0
        cfg = self.config
        self._max_age_ns = (
            _UNBOUNDED if cfg.max_row_age_s is None else round(cfg.max_row_age_s * 1e9)
        )
        self._max_lead_ns = (
            _UNBOUNDED if cfg.max_row_lead_s is None else round(cfg.max_row_lead_s * 1e9)
        )

    @property
    def symbols(self) -> list[str]:
        """The symbols still captured: all but those Phemex refused for good."""
        return [s for s in self.instruments if s not in self.stats.rejected]

    def positions(self) -> dict[str, int]:
        """The newest exchange time taken per symbol (-1 before the first)."""
        return {s: lane.reconciler.ts_ns for s, lane in self._lanes.items()}

    def connect(self, now: float) -> list[str]:
        """A new connection: every symbol is subscribed afresh and awaits its snapshot.

        A symbol still waiting for its snapshot on the old connection keeps what it held, as
        the bridge the new snapshot may join.
        """
        waiting = {s: sub.held for s, sub in self._subs.items() if not sub.live and sub.held}
        self._subs.clear()
        self._live.clear()
        self._timed.clear()
        self._pending.clear()
        requests = [self._subscribe(symbol, now) for symbol in self.symbols]
        for symbol, held in waiting.items():
            if symbol in self._subs:
                self._subs[symbol].bridge = held
        return requests

    def ping(self) -> str:
        return protocol.ping(self._next_id())

    def due(self) -> float:
        """The earliest deadline of any subscription (``NEVER`` if none): call ``tick`` then."""
        subs = self._subs
        return min((subs[symbol].deadline for symbol in self._timed), default=NEVER)

    def tick(self, now: float, wall_ns: int) -> Output:
        """Act on deadlines that have passed: retry refused subscribes, chase missing snapshots."""
        trades: list[Trade] = []
        gaps: list[Gap] = []
        requests: list[str] = []
        for symbol, sub in list(self._subs.items()):
            if now < sub.deadline:
                continue
            if sub.retry:
                requests.append(self._subscribe(symbol, now))
                continue
            log.warning("%s: no snapshot %.1f s after subscribing", symbol, self._timeout)
            out = self._no_snapshot(symbol, sub, now, wall_ns)
            trades += out.trades
            gaps += out.gaps
            requests += out.requests
        return Output(trades, gaps, requests) if trades or gaps or requests else NOTHING

    def receive(self, frame: str | bytes, recv_ns: int, now: float | None = None) -> Output:
        """Take one frame received at wall time ``recv_ns`` (ns): the sans-I/O entry point.

        ``now`` is the clock of the deadlines (``due``, ``tick``): the capture passes a
        monotonic reading; without it, ``recv_ns`` in seconds is that clock (a replay, an
        embedding that never calls ``tick``). The frame is text or bytes, as the socket gave it.
        """
        stats = self.stats
        stats.frames += 1
        if self._live_frame is not None:  # the common case, compiled: see hotpath.py
            hit = self._live_frame(frame, self._live, recv_ns, self._max_age_ns, self._max_lead_ns)
            if hit is not None:
                stats.trade_messages += 1
                lane, trades, lines, lag = hit
                if not trades:
                    return NOTHING
                lane.stats.received += len(trades)
                stats.last_lag_ns = lag
                if lag > stats.peak_lag_ns:  # noqa: PLR1730 (once a frame: a compare, not a call)
                    stats.peak_lag_ns = lag
                return _new(Output, (trades, (), (), lines))
        if now is None:
            now = recv_ns / 1e9
        try:
            msg = protocol.parse(frame)
        except protocol.MalformedFrame as exc:
            stats.malformed_frames += 1
            log.warning("skipped a malformed frame (%s): %.120r", exc, frame)
            return NOTHING
        if type(msg) is protocol.TradesMessage:
            return self._trades(msg, recv_ns, now)
        if type(msg) is protocol.Reply:
            return self._reply(msg, now)
        stats.unknown_frames += 1
        return NOTHING

    # Trades

    def _trades(self, msg: protocol.TradesMessage, recv_ns: int, now: float) -> Output:
        symbol = msg.symbol
        sub = self._subs.get(symbol)
        if sub is None:  # not ours, or given up
            self.stats.unknown_frames += 1
            return NOTHING
        self.stats.trade_messages += 1
        lane = self._lanes[symbol]
        if msg.key == lane.rows_key:
            window = (recv_ns - self._max_age_ns, recv_ns + self._max_lead_ns)
            rows, bad = fills(lane.instrument, msg.rows, window)
        else:
            rows, bad = [], len(msg.rows)
        if bad:
            lane.stats.bad_rows += bad
            log.warning("%s: skipped %d bad rows in a %s", symbol, bad, msg.kind)
        if msg.kind == INCREMENTAL:
            if sub.live:
                trades, gaps = lane.reconciler.incremental(rows, recv_ns, msg.seq)
                return self._taken(symbol, trades, gaps)
            if not rows:
                return NOTHING
            if not sub.accepting:  # the old subscription's last words: the tail of its run
                sub.bridge.append(Batch(rows, recv_ns, msg.seq, INCREMENTAL))
                return NOTHING
            sub.held.append(Batch(rows, recv_ns, msg.seq, INCREMENTAL))
            sub.held_fills += len(rows)
            if sub.gave_up:
                return self._resolve(symbol, sub, None, recv_ns)
            if sub.held_fills > self.config.max_held_fills:
                log.warning("%s: %d fills held and still no snapshot", symbol, sub.held_fills)
                sub.gave_up = True
                return self._resolve(symbol, sub, None, recv_ns)
            return NOTHING
        if sub.live or not sub.accepting:
            log.info("%s: ignored a snapshot (live: %s)", symbol, sub.live)
            return NOTHING
        if not rows:
            log.warning("%s: a snapshot with no valid row", symbol)
            return self._no_snapshot(symbol, sub, now, recv_ns)
        return self._resolve(symbol, sub, Batch(rows, recv_ns, msg.seq, SNAPSHOT), recv_ns)

    def _resolve(
        self, symbol: str, sub: _Subscription, snapshot: Batch | None, detected_ns: int
    ) -> Output:
        """Reconcile the snapshot (or, without one, the held incrementals) and go live."""
        if snapshot is None:
            batches, reason = sub.held, "snapshot_missing"
        else:
            batches, reason = union(snapshot, sub.held, sub.bridge), "snapshot_short"
        trades, gaps = self._lanes[symbol].reconciler.reconcile(batches, detected_ns, reason)
        sub.live, sub.deadline, sub.held, sub.held_fills, sub.bridge = True, NEVER, [], 0, []
        self._live[symbol] = self._lanes[symbol]
        self._timed.discard(symbol)
        return self._taken(symbol, trades, gaps)

    def _taken(self, symbol: str, trades: list[Trade], gaps: list[Gap]) -> Output:
        lane = self._lanes[symbol]
        stats = lane.stats
        stats.duplicates = lane.reconciler.duplicates
        if gaps:
            stats.gaps += len(gaps)
            for gap in gaps:
                log.warning(
                    "%s: trades may be missing between %d and %d ns (%s)",
                    symbol,
                    gap.from_ts_ns,
                    gap.to_ts_ns,
                    gap.reason,
                )
        if trades:
            stats.received += len(trades)
            last = trades[-1]
            self.stats.last_lag_ns = lag = last.recv_ns - last.ts_ns
            self.stats.peak_lag_ns = max(self.stats.peak_lag_ns, lag)
            return _new(Output, (trades, gaps, (), None))
        return Output(trades, gaps) if gaps else NOTHING

    def _no_snapshot(self, symbol: str, sub: _Subscription, now: float, wall_ns: int) -> Output:
        """The snapshot is overdue or unusable: ask again, or give up and take what comes."""
        sub.tries += 1
        if sub.tries < self.config.snapshot_attempts:
            self.stats.symbols[symbol].resubscribes += 1
            unsubscribe_id = self._next_id()
            self._pending[unsubscribe_id] = (symbol, _UNSUBSCRIBE)
            unsubscribe = protocol.unsubscribe(unsubscribe_id, self.instruments[symbol])
            subscribe = self._subscribe(symbol, now)
            renewed = self._subs[symbol]
            renewed.accepting, renewed.tries = False, sub.tries
            renewed.unsubscribe_id, renewed.bridge = unsubscribe_id, sub.held
            return Output(requests=(unsubscribe, subscribe))
        log.warning(
            "%s: no usable snapshot after %d subscribes: taking trades as they come, "
            "with a gap from the cursor to the first",
            symbol,
            sub.tries,
        )
        sub.gave_up, sub.accepting, sub.deadline = True, True, NEVER
        self._timed.discard(symbol)
        return self._resolve(symbol, sub, None, wall_ns) if sub.held else NOTHING

    # Requests and replies

    def _next_id(self) -> int:
        self._request_id += 1
        return self._request_id

    @property
    def _timeout(self) -> float:
        return self.config.snapshot_timeout_s

    def _subscribe(self, symbol: str, now: float) -> str:
        """A subscribe request for ``symbol``; its subscription now awaits a snapshot."""
        request_id = self._next_id()
        self._pending[request_id] = (symbol, _SUBSCRIBE)
        self._subs[symbol] = _Subscription(request_id, now + self._timeout)
        self._live.pop(symbol, None)
        self._timed.add(symbol)
        return protocol.subscribe(request_id, self.instruments[symbol])

    def _reply(self, reply: protocol.Reply, now: float) -> Output:
        symbol, method = self._pending.pop(reply.id, (None, None))
        sub = self._subs.get(symbol) if symbol is not None else None
        if sub is not None and reply.id == sub.unsubscribe_id:
            sub.accepting = True  # answered, even with an error: what follows is not the old one
        if reply.error is None:
            if symbol is not None and sub is not None and sub.request_id == reply.id:
                sub.accepting = True
                self._refusals.pop(symbol, None)
            return NOTHING
        self.stats.subscribe_errors += 1
        if symbol is None or method != _SUBSCRIBE:
            log.warning("Phemex error for request %d (%s): %s", reply.id, method, reply.error)
            return NOTHING
        instrument = self.instruments[symbol]
        text = (
            f"Phemex rejected {instrument.subscribe_method} for {symbol}: "
            f"{reply.error.get('code')} {reply.error.get('message')}"
        )
        self._refusals[symbol] += 1
        refusals = self._refusals[symbol]
        if refusals >= self.config.max_subscribe_errors:
            self.stats.rejected[symbol] = f"{text} ({refusals} times in a row)"
            self._subs.pop(symbol, None)
            self._live.pop(symbol, None)
            self._timed.discard(symbol)
            log.error("%s: %s times in a row; no longer capturing %s", text, refusals, symbol)
        elif sub is not None and sub.request_id == reply.id and not sub.live:
            log.warning("%s; retrying", text)
            sub.retry, sub.deadline = True, now + self.retry_delay(refusals - 1)
            self._timed.add(symbol)
        return NOTHING


def union(snapshot: Batch, held: Sequence[Batch], bridge: Sequence[Batch] = ()) -> list[Batch]:
    """The snapshot and runs of incrementals, as one oldest-first view.

    A run (the incrementals held for this subscription, or the previous subscription's as a
    ``bridge``) is contiguous. If it reaches the snapshot's oldest row, its older fills extend
    the view back in time; a run that ends before the snapshot begins is dropped, since nothing
    vouches for what lies between it and the snapshot (the gap before the view covers it).
    Fills within the snapshot's span are already in it; any beyond its count of the same fill
    (a snapshot cut inside its oldest nanosecond) join it. Newer fills follow in their batches.
    """
    if not held and not bridge:  # the usual case: nothing came before the snapshot
        return [snapshot]
    rows = snapshot.fills
    oldest, newest = rows[0].ts_ns, rows[-1].ts_ns
    in_snapshot = Counter(rows)
    seen: Counter[Fill] = Counter()
    extra: list[Fill] = []
    before: list[Batch] = []
    after: list[Batch] = []
    for run in (bridge, held):
        if max((b.fills[-1].ts_ns for b in run if b.fills), default=oldest - 1) < oldest:
            continue
        for batch in run:
            older, newer = [], []
            for f in batch.fills:
                if f.ts_ns < oldest:
                    older.append(f)
                elif f.ts_ns > newest:
                    newer.append(f)
                else:
                    seen[f] += 1
                    if seen[f] > in_snapshot[f]:
                        extra.append(f)
            if older:
                before.append(batch._replace(fills=older))
            if newer:
                after.append(batch._replace(fills=newer))
    if extra:
        snapshot = snapshot._replace(fills=sorted([*rows, *extra], key=lambda f: f.ts_ns))
    return [*before, snapshot, *after]
