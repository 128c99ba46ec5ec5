"""Database extracts (PostgreSQL via psycopg 3): one consistent snapshot, every value as text.

The whole read happens in one ``REPEATABLE READ READ ONLY`` transaction, so the rows come from a
single snapshot even while the source keeps changing, and nothing can be written by accident. Rows
are streamed through a server-side (named) cursor in batches of ``fetch_size``. Every contract
column is cast to text in SQL (``col::text``) with ``DateStyle = ISO, YMD`` and ``TimeZone = UTC``
set for the transaction, so dates arrive as ``1980-01-02`` whatever the server's defaults; NULLs
stay NULL. Rows are ordered by all contract columns, so re-reading an unchanged source gives the
same file (and the same ``_line`` numbers, which here are row numbers).

Errors are split by what a retry could fix: connection failures, timeouts and dropped connections
raise `TransientSourceError` (orchestration retries it); a missing table or column, a syntax error
or a permission problem raise `SourceError` (no retry). The DSN's password never appears in a
message, and server messages that could quote row values are withheld.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from linkage.config import Agency, DatabaseSource
from linkage.contracts import Contract
from linkage.errors import SourceError
from linkage.sources.common import (
    DuplicateFilter,
    ExtractResult,
    ExtractWriter,
    TransientSourceError,
    finish,
    plan_columns,
)

DEFAULT_CONNECT_TIMEOUT = 30  # seconds; libpq waits for ever unless told otherwise

# SQLSTATE classes whose server messages name objects (tables, columns), never row values.
_SCHEMA_CLASSES = ("42", "3F", "3D", "28")

# Connection failures that are configuration faults, not passing trouble (libpq's wording).
_CONFIG_FAULTS = (
    "authentication failed",
    "does not exist",
    "pg_hba.conf",
    "no password supplied",
    "permission denied",
)


def _label(source: DatabaseSource) -> str:
    return f"database:{source.table}" if source.table else "database:query"


def _scrub(message: str, secrets: list[str]) -> str:
    for s in secrets:
        if s:
            message = message.replace(s, "***")
    return message


def _relation(source: DatabaseSource) -> sql.Composable:
    if source.table:
        # "schema.table" names a table in a schema; each part is quoted as written.
        return sql.SQL("{} AS src").format(sql.Identifier(*source.table.split(".")))
    query = (source.query or "").strip().rstrip(";").strip()
    return sql.SQL("({}) AS src").format(sql.SQL(query))  # type: ignore[arg-type]


def _dsn(agency: Agency, source: DatabaseSource, environ: Mapping[str, str]) -> str:
    dsn = environ.get(source.dsn_env, "")
    if not dsn.strip():
        raise SourceError(
            f"agency {agency.name!r}: the environment variable {source.dsn_env} (named by "
            f"`source.dsn_env`) is not set or empty; set it to a libpq connection string, e.g. "
            f"export {source.dsn_env}='postgresql://user@host:5432/dbname', and keep the password "
            "out of it (use ~/.pgpass or PGPASSFILE)"
        )
    return dsn


def _error(e: psycopg.Error, label: str, step: str, secrets: list[str]) -> SourceError:
    """Turn a psycopg error into ours: transient (retry) or not, with a safe message."""
    state = e.sqlstate or ""
    name = type(e).__name__
    message = " ".join(str(e).split())
    if isinstance(e, psycopg.OperationalError) and any(s in message for s in _CONFIG_FAULTS):
        # A wrong user, password, database or pg_hba rule: retrying cannot help.
        return SourceError(
            _scrub(f"{label}: {step} failed: {message}; check the connection string", secrets)
        )
    if isinstance(e, psycopg.OperationalError | psycopg.errors.TransactionRollback):
        # Connection refused or dropped, timeouts, server shutting down, serialization failure.
        detail = message if not state or state[:2] in ("08", "57") else name
        return TransientSourceError(
            _scrub(
                f"{label}: {step} failed, possibly for a short while ({detail}); retry later",
                secrets,
            )
        )
    if state[:2] in _SCHEMA_CLASSES and e.diag.message_primary:
        detail = f"{e.diag.message_primary} [{state}]"
    else:
        detail = (
            f"{name} [{state or 'no SQLSTATE'}] (the server's message is withheld as it may "
            "quote data)"
        )
    return SourceError(
        _scrub(
            f"{label}: {step} failed: {detail}; check `source.table` / `source.query` and the "
            "account's permissions",
            secrets,
        )
    )


def read_database_extract(
    agency: Agency,
    contract: Contract,
    out_dir: Path,
    *,
    environ: Mapping[str, str] | None = None,
) -> ExtractResult:
    """Read an agency's table or query into accepted and quarantine Parquet files in ``out_dir``.

    Args:
        environ: where to look up ``source.dsn_env``; the process environment by default.

    Example:
        >>> read_database_extract(agency, contract, Path("out/work")).source  # doctest: +SKIP
        'database:public.people'

    Raises:
        SourceError: the DSN variable is unset or invalid, the table, query or a column is wrong,
            or permission is denied (no retry).
        FileRejected: ``missing_columns`` or ``duplicate_columns``.
        TransientSourceError: the server could not be reached, or the read was interrupted.
    """
    source = agency.source
    if not isinstance(source, DatabaseSource):
        raise TypeError(f"agency {agency.name!r} does not have a database source")
    label = _label(source)
    dsn = _dsn(agency, source, os.environ if environ is None else environ)
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        # libpq's parse error quotes the string, password included: withhold it.
        raise SourceError(
            f"agency {agency.name!r}: the value of {source.dsn_env} is not a valid libpq "
            "connection string (the parser's message is withheld as it may quote the password)"
        ) from None
    secrets = [dsn, str(params.get("password") or "")]
    kwargs: dict[str, Any] = {}
    if "connect_timeout" not in params:
        kwargs["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT
    if "application_name" not in params:
        kwargs["application_name"] = f"linkage:{agency.name}"

    try:
        conn = psycopg.connect(dsn, autocommit=False, **kwargs)
    except psycopg.Error as e:
        raise _error(e, label, "connecting", secrets) from None

    step = "reading"
    try:
        with conn:
            conn.read_only = True
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with conn.transaction():
                conn.execute("SET LOCAL DateStyle TO 'ISO, YMD'")
                conn.execute("SET LOCAL TimeZone TO 'UTC'")
                relation = _relation(source)
                step = "describing the columns"
                with conn.cursor() as cur:
                    cur.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(relation))
                    found = [d.name for d in cur.description or []]
                plan = plan_columns(label, found, contract)
                names = contract.column_names
                select = sql.SQL("SELECT {cols} FROM {rel} ORDER BY {order}").format(
                    cols=sql.SQL(", ").join(
                        sql.SQL("(src.{c})::text AS {c}").format(c=sql.Identifier(n)) for n in names
                    ),
                    rel=relation,
                    order=sql.SQL(", ").join(sql.SQL(str(i)) for i in range(1, len(names) + 1)),
                )
                step = "reading rows"
                result = _stream(
                    conn, select, source, agency, contract, out_dir, label, plan.dropped
                )
    except psycopg.Error as e:
        raise _error(e, label, step, secrets) from None
    return result


def _stream(
    conn: psycopg.Connection[Any],
    select: sql.Composed,
    source: DatabaseSource,
    agency: Agency,
    contract: Contract,
    out_dir: Path,
    label: str,
    dropped: list[str],
) -> ExtractResult:
    delivered = duplicates = 0
    is_duplicate = DuplicateFilter().is_duplicate
    with (
        ExtractWriter(out_dir, agency.name, contract) as writer,
        conn.cursor(name=f"linkage_extract_{agency.name}") as cur,
    ):
        cur.itersize = source.fetch_size
        cur.execute(select)
        while batch := cur.fetchmany(source.fetch_size):
            rows: list[tuple[str | None, ...]] = []
            lines: list[int] = []
            for i, row in enumerate(batch, start=delivered + 1):
                if is_duplicate(row):
                    duplicates += 1
                else:
                    rows.append(row)
                    lines.append(i)
            delivered += len(batch)
            writer.write_rows(rows, lines)
        return finish(
            writer,
            agency=agency.name,
            source=label,
            sha256=None,
            delivered=delivered,
            blank_lines=0,
            duplicates=duplicates,
            columns_dropped=dropped,
        )
