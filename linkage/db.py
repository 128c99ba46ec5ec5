"""DuckDB connections configured from the project config (memory limit, spill folder, threads)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from linkage.config import ProjectConfig


def connect(
    path: Path | str, config: ProjectConfig, *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """A connection honouring the configured memory limit, temp directory and threads."""
    config.duckdb.temp_directory.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(
        str(path),
        read_only=read_only,
        config={
            "memory_limit": config.duckdb.memory_limit,
            "temp_directory": str(config.duckdb.temp_directory),
            "threads": config.duckdb.threads,
            "preserve_insertion_order": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        },
    )


_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def memory_limit_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """The connection's DuckDB memory limit in bytes (DuckDB reports it as e.g. '95.3 MiB')."""
    (text,) = con.sql("SELECT current_setting('memory_limit')").fetchall()[0]
    number, unit = str(text).split()
    return int(float(number) * _UNITS[unit])


def out_of_memory(error: BaseException | None) -> bool:
    """Whether ``error`` is, or was raised from, DuckDB running out of memory (Splink wraps
    DuckDB's errors in its own)."""
    while error is not None:
        if isinstance(error, duckdb.OutOfMemoryException):
            return True
        error = error.__cause__ or error.__context__
    return False


#: Rough bytes a row of records or persons takes in a sort (wide rows: names, addresses, flags).
_BYTES_PER_SORTED_ROW = 1000


def order_by(con: duckdb.DuckDBPyConnection, rows: int, columns: str) -> str:
    """`` ORDER BY columns`` when sorting ``rows`` wide rows fits in half the memory limit, else
    nothing. Releases are written sorted when they can be (a person's rows together, the same
    file from the same data), but DuckDB cannot sort such rows in a small memory limit (860k
    records in 64 MB ran out of memory), and a release in any order is the same release."""
    return (
        f" ORDER BY {columns}"
        if rows * _BYTES_PER_SORTED_ROW <= memory_limit_bytes(con) // 2
        else ""
    )


def hardened(path: Path | str) -> duckdb.DuckDBPyConnection:
    """A read-only connection for user-written SQL: no file or network access, settings locked."""
    return duckdb.connect(
        str(path),
        read_only=True,
        config={
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "lock_configuration": True,
        },
    )


def quote(identifier: str) -> str:
    """Quote a SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def sql_str(value: str | Path) -> str:
    """A SQL string literal (for file paths, which DuckDB cannot bind as parameters in DDL)."""
    return "'" + str(value).replace("'", "''") + "'"
