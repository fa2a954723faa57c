-- One-minute bars of one symbol's one hour partition: a rollup run reads that partition only.
--
-- open and close are the first and last trades by exchange time, ties within a nanosecond broken
-- by trade_key, so that every run picks the same trades. Each column is cast to its declared type
-- so that Athena and DuckDB write the same types. vwap is Trino's decimal division: the larger
-- scale (20), rounded half up.
SELECT
    CAST(symbol AS VARCHAR) AS symbol,
    CAST(bar AS TIMESTAMP) AS minute,
    CAST(max(CASE WHEN from_first = 1 THEN price END) AS DECIMAL(28, 10)) AS open,
    CAST(max(price) AS DECIMAL(28, 10)) AS high,
    CAST(min(price) AS DECIMAL(28, 10)) AS low,
    CAST(max(CASE WHEN from_last = 1 THEN price END) AS DECIMAL(28, 10)) AS close,
    CAST(sum(qty) AS DECIMAL(38, 10)) AS volume,
    CAST(sum(price * qty) AS DECIMAL(38, 20)) AS quote_volume,
    CAST(sum(price * qty) / sum(qty) AS DECIMAL(38, 20)) AS vwap,
    CAST(count(*) AS BIGINT) AS trade_count,
    CAST(sum(CASE WHEN side = 'buy' THEN qty ELSE 0 END) AS DECIMAL(38, 10)) AS buy_volume,
    CAST(sum(CASE WHEN side = 'sell' THEN qty ELSE 0 END) AS DECIMAL(38, 10)) AS sell_volume
FROM (
    SELECT
        symbol,
        side,
        price,
        qty,
        date_trunc('minute', ts) AS bar,
        row_number() OVER (
            PARTITION BY date_trunc('minute', ts) ORDER BY ts_ns, trade_key
        ) AS from_first,
        row_number() OVER (
            PARTITION BY date_trunc('minute', ts) ORDER BY ts_ns DESC, trade_key DESC
        ) AS from_last
    FROM trades
    WHERE symbol = {symbol} AND year = {year} AND month = {month} AND day = {day} AND hour = {hour}
) AS bar_trades
GROUP BY symbol, bar
ORDER BY bar
