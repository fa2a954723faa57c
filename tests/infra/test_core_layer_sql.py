"""The core layer ships the analytics SQL the rollup function renders, not the local rollups."""

from __future__ import annotations

from tradelake.analytics import QUERIES


def test_core_layer_ships_the_sql_files_and_no_local_analytics(artifact):
    with artifact("core.zip") as zf:
        names = set(zf.namelist())
    assert {f"python/tradelake/sql/{name}.sql" for name in QUERIES} <= names
    assert "python/tradelake/analytics.py" in names
    local_only = {
        "python/tradelake/analytics_cli.py",
        "python/tradelake/adapters/duckdb_rollup.py",
        "python/tradelake/adapters/duckdb_lake.py",
    }
    assert not local_only & names
