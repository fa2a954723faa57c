-- The trades, each once: one row per trade_key, the first received stored copy.
--
-- Storage is at least once (a crash between publishing a file and saving the cursor, a Firehose
-- retry), and a copy always has the same trade_key. The key fixes the symbol and ts_ns, hence the
-- hour partition, so partitioning the window by the partition keys and ts_ns too changes nothing
-- in the result but lets a filter on them through the window to the scan: partition filters
-- prune partitions (files), ts_ns filters row groups. Copies differ only in recv_ns, seq and
-- source; ordering by all three makes the pick deterministic.
CREATE OR REPLACE VIEW trades AS
SELECT ts_ns, ts, side, price, qty, trade_key, recv_ns, seq, source, symbol, year, month, day, hour
FROM (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY symbol, year, month, day, hour, ts_ns, trade_key
            ORDER BY recv_ns, seq, source
        ) AS received
    FROM trades_stored
) AS stored
WHERE received = 1
