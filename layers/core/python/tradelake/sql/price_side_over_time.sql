-- Price and side over time, the original design's second visual: every trade of one symbol in
-- [start, end), in exchange-time order (ties by trade_key). The partition filter keeps the scan
-- to the hours of the range.
SELECT ts, side, price, qty
FROM trades
WHERE symbol = {symbol}
    AND year || month || day || hour
        BETWEEN date_format({start}, '%Y%m%d%H')
        AND date_format(date_add('millisecond', -1, {end}), '%Y%m%d%H')
    AND ts >= {start} AND ts < {end}
ORDER BY ts_ns, trade_key
