"""The adapters of the ports (``tradelake.ports``) that run on one machine, without AWS.

The embedded lake writes the same key layout as Firehose in S3 (Parquet trades, JSON Lines gaps,
a cursor file) and DuckDB reads it, so everything downstream of the sink does not care which world
wrote the lake. pyarrow and duckdb are imported only here, never by the core or by Lambda.
"""
