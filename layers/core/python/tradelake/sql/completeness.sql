-- Per symbol and hour partition overlapping [start, end): the trades read, and the declared gaps
-- (intervals in which trades may be missing, inclusive) that touch the hour. An hour with
-- trades and no gap is complete; the trades of an hour with gaps are a lower bound. Hours
-- without any trade have no partition and are not listed.
WITH hours AS (
    SELECT
        symbol,
        date_trunc('hour', min(ts)) AS hour_start,
        min(ts_ns) / 3600000000000 * 3600000000000 AS from_ns,
        count(*) AS trades
    FROM trades
    WHERE year || month || day || hour
        BETWEEN date_format({start}, '%Y%m%d%H')
        AND date_format(date_add('millisecond', -1, {end}), '%Y%m%d%H')
    GROUP BY symbol, year, month, day, hour
)
SELECT
    CAST(hours.symbol AS VARCHAR) AS symbol,
    CAST(hours.hour_start AS TIMESTAMP) AS hour,
    CAST(hours.trades AS BIGINT) AS trades,
    CAST(count(gaps.symbol) AS BIGINT) AS gaps
FROM hours
LEFT JOIN gaps
    ON gaps.symbol = hours.symbol
    AND gaps.from_ts_ns < hours.from_ns + 3600000000000
    AND gaps.to_ts_ns >= hours.from_ns
GROUP BY hours.symbol, hours.hour_start, hours.trades
ORDER BY hours.symbol, hours.hour_start
