"""The PostgreSQL connector against a real server (127.0.0.1:5432, trust auth, database `test`).

Each test works in its own uniquely named schema, dropped afterwards. Override the server with
LINKAGE_TEST_PG_DSN; the tests are skipped when it cannot be reached (run `pytest -m postgres -rs`
to see why).
"""

from __future__ import annotations

import os
import socket
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from linkage.config import Agency
from linkage.contracts import Contract, load_contract
from linkage.errors import FileRejected, SourceError
from linkage.sources import ExtractResult, TransientSourceError, read_extract

pytestmark = pytest.mark.postgres

DSN = os.environ.get("LINKAGE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ENV = "LINKAGE_TEST_SOURCE_DSN"
COLUMNS = ["record_id", "given_name", "family_name", "date_of_birth", "nhs_number"]


def make_contract(folder: Path, columns: list[str] = COLUMNS) -> Contract:
    props = "".join(f"      - {{name: {c}, logicalType: string}}\n" for c in columns)
    path = folder / "contract.yaml"
    path.write_text(
        "apiVersion: v3.1.0\nkind: DataContract\nid: test_db_extract\nversion: 1.0.0\n"
        f"status: active\nschema:\n  - name: people\n    properties:\n{props}",
        encoding="utf-8",
    )
    return load_contract(path)


def make_agency(folder: Path, **source: Any) -> Agency:
    return Agency.model_validate(
        {
            "name": "db_agency",
            "contract": str(folder / "contract.yaml"),
            "source": {"kind": "database", "dsn_env": ENV, **source},
            "mapping": {"source_record_id": "record_id"},
        }
    )


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema holding `people` (with leading-zero ids, dates, NULLs and duplicates)."""
    try:
        admin = psycopg.connect(DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL not reachable at {DSN}: {e}")
    name = f"linkage_test_{uuid.uuid4().hex[:12]}"
    s = sql.Identifier(name)
    with admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(s))
        try:
            admin.execute(
                sql.SQL(
                    "CREATE TABLE {}.people (record_id text, given_name text, family_name text, "
                    "date_of_birth date, nhs_number varchar(10), ethnicity text, loaded_at "
                    "timestamptz DEFAULT now())"
                ).format(s)
            )
            admin.execute(
                sql.SQL(
                    "INSERT INTO {}.people (record_id, given_name, family_name, date_of_birth, "
                    "nhs_number, ethnicity) VALUES (%s, %s, %s, %s, %s, %s)"
                ).format(s),
                ("00017", "Ada", "Lovelace", "1985-12-10", "0123456789", "SECRET-A"),
            )
            rows = [
                ("00018", "Alan", "Turing", "1972-06-23", "9434765919"),
                ("00019", "Grace", None, None, None),
                ("00017", "Ada", "Lovelace", "1985-12-10", "0123456789"),  # exact duplicate
                ("00020", "Zoë", "O’Brien", "2001-02-03", "0000000001"),
            ]
            with admin.cursor() as cur:
                cur.executemany(
                    sql.SQL(
                        "INSERT INTO {}.people (record_id, given_name, family_name, "
                        "date_of_birth, nhs_number) VALUES (%s, %s, %s, %s, %s)"
                    ).format(s),
                    rows,
                )
            yield name
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, DSN)


def extract(tmp_path: Path, **source: Any) -> ExtractResult:
    return read_extract(make_agency(tmp_path, **source), make_contract(tmp_path), tmp_path / "out")


def rows_of(r: ExtractResult) -> list[dict[str, Any]]:
    return pq.read_table(r.accepted_path).to_pylist()


def test_a_table_is_read_as_text_with_zeros_iso_dates_and_nulls_kept(
    tmp_path: Path, schema: str, env: None
) -> None:
    r = extract(tmp_path, table=f"{schema}.people", fetch_size=2)
    assert r.source == f"database:{schema}.people"
    assert r.sha256 is None
    assert (r.delivered, r.accepted, r.duplicates, r.quarantined, r.blank_lines) == (5, 4, 1, 0, 0)
    assert r.columns_dropped == ["ethnicity", "loaded_at"]
    schema_ = pq.read_schema(r.accepted_path)
    assert schema_.names == [*COLUMNS, "_line"]
    assert all(schema_.field(c).type == pa.string() for c in COLUMNS)
    rows = {row["record_id"]: row for row in rows_of(r)}
    assert set(rows) == {"00017", "00018", "00019", "00020"}
    assert rows["00017"]["date_of_birth"] == "1985-12-10"
    assert rows["00020"]["nhs_number"] == "0000000001"
    assert rows["00020"]["family_name"] == "O’Brien"
    assert rows["00019"]["family_name"] is None and rows["00019"]["date_of_birth"] is None
    assert b"SECRET" not in r.accepted_path.read_bytes()
    # _line is the row number in the (ordered) delivery; the duplicate was row 2.
    assert sorted(row["_line"] for row in rows.values()) == [1, 3, 4, 5]


def test_rows_come_in_a_stable_order_so_a_rerun_gives_the_same_file(
    tmp_path: Path, schema: str, env: None
) -> None:
    first = rows_of(extract(tmp_path, table=f"{schema}.people"))
    second = rows_of(extract(tmp_path, table=f"{schema}.people"))
    assert first == second
    assert [r["record_id"] for r in first] == ["00017", "00018", "00019", "00020"]


def test_dates_are_iso_whatever_the_server_datestyle(
    tmp_path: Path, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, DSN + "?options=-c%20DateStyle%3DSQL%2CDMY")
    rows = rows_of(extract(tmp_path, table=f"{schema}.people"))
    assert rows[0]["date_of_birth"] == "1985-12-10"


def test_a_query_source_is_read_as_a_subquery(tmp_path: Path, schema: str, env: None) -> None:
    query = (
        f"SELECT record_id, upper(given_name) AS given_name, family_name, date_of_birth, "
        f"nhs_number FROM {schema}.people WHERE record_id <> '00018';"
    )
    r = extract(tmp_path, query=query)
    assert r.source == "database:query"
    assert (r.delivered, r.accepted, r.duplicates) == (4, 3, 1)
    assert r.columns_dropped == []
    assert {row["given_name"] for row in rows_of(r)} == {"ADA", "GRACE", "ZOË"}


def test_a_missing_column_rejects_the_extract(tmp_path: Path, schema: str, env: None) -> None:
    query = f"SELECT record_id, given_name, date_of_birth, nhs_number FROM {schema}.people"
    with pytest.raises(FileRejected) as info:
        extract(tmp_path, query=query)
    assert info.value.reason == "missing_columns"
    assert "family_name" in info.value.detail
    assert not (tmp_path / "out" / "db_agency.parquet").exists()


def test_an_extra_column_is_dropped_and_never_stored(
    tmp_path: Path, schema: str, env: None
) -> None:
    query = f"SELECT *, 'SECRET-X' AS religion FROM {schema}.people"
    r = extract(tmp_path, query=query)
    assert "religion" in r.columns_dropped
    assert b"SECRET" not in r.accepted_path.read_bytes()


def test_an_unset_dsn_variable_is_an_error_naming_it_and_how_to_set_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(SourceError, match=f"{ENV}.*not set") as info:
        extract(tmp_path, table="people")
    assert f"export {ENV}=" in str(info.value)
    assert not isinstance(info.value, TransientSourceError)


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_is_a_transient_error_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _unused_port()
    monkeypatch.setenv(
        ENV, f"postgresql://postgres:hunter2secret@127.0.0.1:{port}/test?connect_timeout=2"
    )
    with pytest.raises(TransientSourceError) as info:
        extract(tmp_path, table="people")
    assert "hunter2secret" not in "".join(traceback.format_exception(info.value))
    assert "Connection refused" in str(info.value)


def test_an_unparseable_dsn_is_an_error_that_does_not_echo_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "host=127.0.0.1 password=hunter2secret nonsense")
    with pytest.raises(SourceError) as info:
        extract(tmp_path, table="people")
    assert "hunter2secret" not in "".join(traceback.format_exception(info.value))
    assert not isinstance(info.value, TransientSourceError)


def test_an_undefined_table_is_a_schema_error_not_retried(
    tmp_path: Path, schema: str, env: None
) -> None:
    with pytest.raises(SourceError, match="does not exist") as info:
        extract(tmp_path, table=f"{schema}.no_such_table")
    assert not isinstance(info.value, TransientSourceError)


def test_an_undefined_column_in_a_query_is_a_schema_error_not_retried(
    tmp_path: Path, schema: str, env: None
) -> None:
    with pytest.raises(SourceError, match="does not exist") as info:
        extract(tmp_path, query=f"SELECT no_such_column FROM {schema}.people")
    assert not isinstance(info.value, TransientSourceError)


def test_a_statement_timeout_is_transient(
    tmp_path: Path, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, DSN + "?options=-c%20statement_timeout%3D100")
    with pytest.raises(TransientSourceError, match="statement timeout"):
        extract(tmp_path, query=f"SELECT p.*, pg_sleep(1) FROM {schema}.people p")


def test_the_read_is_one_read_only_snapshot(tmp_path: Path, schema: str, env: None) -> None:
    query = (
        "SELECT current_setting('transaction_read_only') AS record_id, "
        "current_setting('transaction_isolation') AS given_name, '' AS family_name, "
        "'' AS date_of_birth, '' AS nhs_number"
    )
    [row] = rows_of(extract(tmp_path, query=query))
    assert (row["record_id"], row["given_name"]) == ("on", "repeatable read")


def test_writing_through_a_query_source_is_refused(tmp_path: Path, schema: str, env: None) -> None:
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SEQUENCE {}.counter").format(sql.Identifier(schema)))
    query = (
        f"SELECT record_id, given_name, family_name, date_of_birth, nhs_number "
        f"FROM {schema}.people WHERE nextval('{schema}.counter') > 0"
    )
    with pytest.raises(SourceError) as info:
        extract(tmp_path, query=query)
    assert not isinstance(info.value, TransientSourceError)
    with psycopg.connect(DSN, autocommit=True) as admin:
        called = admin.execute(
            sql.SQL("SELECT is_called FROM {}.counter").format(sql.Identifier(schema))
        ).fetchone()
    assert called == (False,), "the read-only transaction refused to advance the sequence"
