-- The heat map of the original design: for each taker side, the 50 distinct prices traded most
-- often (by number of trades, ties to the lower price) by one symbol in [start, end), with the
-- volume traded at each. The partition filter keeps the scan to the hours of the range.
SELECT side, price, trades, volume
FROM (
    SELECT
        side,
        price,
        count(*) AS trades,
        sum(qty) AS volume,
        row_number() OVER (PARTITION BY side ORDER BY count(*) DESC, price) AS place
    FROM trades
    WHERE symbol = {symbol}
        AND year || month || day || hour
            BETWEEN date_format({start}, '%Y%m%d%H')
            AND date_format(date_add('millisecond', -1, {end}), '%Y%m%d%H')
        AND ts >= {start} AND ts < {end}
    GROUP BY side, price
) AS by_price
WHERE place <= 50
ORDER BY side, trades DESC, price
