"""Analyst SQL against the current release, on a hardened read-only connection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from linkage.db import hardened
from linkage.errors import QueryError
from linkage.publish import current_release


def run_query(
    index_dir: Path, sql: str, *, limit: int | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` on the current release and return (column names, rows).

    The connection is read-only, cannot read or write other files, and its settings are locked.

    Raises:
        QueryError: no release yet, or the query failed (with DuckDB's message).
    """
    release = current_release(index_dir)
    if release is None:
        raise QueryError(f"no published index in {index_dir}; run `linkage run` first")
    con = hardened(release)
    try:
        rel = con.sql(sql)
        if rel is None:
            raise QueryError(
                "the statement returned no result; `linkage sql` is for SELECT queries"
            )
        rows = rel.limit(limit).fetchall() if limit else rel.fetchall()
        return list(rel.columns), rows
    except duckdb.Error as e:
        raise QueryError(f"query failed: {e}") from e
    finally:
        con.close()
