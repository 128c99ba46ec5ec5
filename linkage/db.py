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
