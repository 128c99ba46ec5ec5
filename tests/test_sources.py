"""Source connectors (CSV and Parquet): every bad input gets its declared outcome, no row is lost.

Case IDs (A1, B2, C3...) refer to the bad-inputs guide; fixtures are in tests/fixtures/sources/.
The PostgreSQL connector is tested in test_sources_postgres.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import logging
import shutil
import stat
import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any
from unittest import mock

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkage.config import Agency, DuckDBConfig
from linkage.contracts import Contract, load_contract
from linkage.errors import FileRejected, SourceError
from linkage.sources import (
    QUARANTINE_SCHEMA,
    DeliveryMissing,
    ExtractResult,
    TransientSourceError,
    read_extract,
)
from linkage.sources.csv import read_csv_extract
from linkage.sources.parquet import read_parquet_extract

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
COLUMNS = ["record_id", "given_name", "family_name", "date_of_birth", "nhs_number"]
HEADER = ",".join(COLUMNS)


# --- helpers --------------------------------------------------------------------------------------


def make_contract(folder: Path, columns: list[str] = COLUMNS) -> Contract:
    """Write a minimal valid ODCS v3.1 contract with string columns and load it."""
    props = "".join(f"      - {{name: {c}, logicalType: string}}\n" for c in columns)
    path = folder / "contract.yaml"
    path.write_text(
        "apiVersion: v3.1.0\nkind: DataContract\nid: test_extract\nversion: 1.0.0\n"
        f"status: active\nschema:\n  - name: people\n    properties:\n{props}",
        encoding="utf-8",
    )
    return load_contract(path)


def make_agency(path: Path, kind: str = "csv", name: str = "test_agency", **source: Any) -> Agency:
    return Agency.model_validate(
        {
            "name": name,
            "contract": str(path.parent / "contract.yaml"),
            "source": {"kind": kind, "path": str(path), **source},
            "mapping": {"source_record_id": "record_id"},
        }
    )


def extract(tmp_path: Path, source: Path | str | bytes, **options: Any) -> ExtractResult:
    """Read a fixture (name), a file (path) or bytes as a CSV source with the default contract."""
    if isinstance(source, bytes):
        path = tmp_path / "delivery.csv"
        path.write_bytes(source)
    elif isinstance(source, str):
        path = FIXTURES / source
    else:
        path = source
    contract = make_contract(tmp_path)
    return read_extract(make_agency(path, **options), contract, tmp_path / "out")


def rejected(tmp_path: Path, source: Path | str | bytes, **options: Any) -> FileRejected:
    with pytest.raises(FileRejected) as info:
        extract(tmp_path, source, **options)
    assert not list((tmp_path / "out").glob("*")), "a rejected file leaves no output behind"
    return info.value


def accepted(result: ExtractResult) -> list[dict[str, Any]]:
    return pq.read_table(result.accepted_path).to_pylist()


def quarantined(result: ExtractResult) -> list[dict[str, Any]]:
    return pq.read_table(result.quarantine_path).to_pylist()


def balanced(r: ExtractResult) -> bool:
    return r.delivered == r.accepted + r.quarantined + r.blank_lines + r.duplicates


def csv_bytes(rows: list[list[str]], encoding: str = "utf-8") -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode(encoding)


ROW = ["00017", "Ada", "Lovelace", "1985-12-10", "0123456789"]


# --- the happy path and the output files ----------------------------------------------------------


def test_a_good_file_is_accepted_whole_with_text_columns_in_contract_order(tmp_path: Path) -> None:
    r = extract(tmp_path, "good.csv")
    assert (r.delivered, r.accepted, r.quarantined, r.blank_lines, r.duplicates) == (3, 3, 0, 0, 0)
    assert r.agency == "test_agency"
    assert r.source == str(FIXTURES / "good.csv")
    assert r.accepted_path == tmp_path / "out" / "test_agency.parquet"
    assert r.quarantine_path == tmp_path / "out" / "test_agency.quarantine.parquet"
    schema = pq.read_schema(r.accepted_path)
    assert schema.names == [*COLUMNS, "_line"]
    assert all(schema.field(c).type == pa.string() for c in COLUMNS)
    assert schema.field("_line").type == pa.int64()
    assert pq.read_schema(r.quarantine_path).equals(QUARANTINE_SCHEMA)
    df = pl.read_parquet(r.accepted_path)
    assert df.schema["record_id"] == pl.String
    assert [row["_line"] for row in accepted(r)] == [2, 3, 4]


def test_the_sha256_is_that_of_the_delivered_bytes(tmp_path: Path) -> None:
    import hashlib

    r = extract(tmp_path, "good.csv")
    assert r.sha256 == hashlib.sha256((FIXTURES / "good.csv").read_bytes()).hexdigest()


def test_a15_leading_zero_identifiers_stay_text_with_their_zeros(tmp_path: Path) -> None:
    rows = accepted(extract(tmp_path, "good.csv"))
    assert [r["record_id"] for r in rows] == ["00017", "00018", "00019"]
    assert rows[2]["nhs_number"] == "0004567890"
    assert rows[0]["date_of_birth"] == "1985-12-10"  # never cast


def test_the_quarantine_store_is_mode_0600_and_the_accepted_file_0640(tmp_path: Path) -> None:
    r = extract(tmp_path, "too_many_columns.csv")
    assert stat.S_IMODE(r.quarantine_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(r.accepted_path.stat().st_mode) == 0o640
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "test_agency.parquet",
        "test_agency.quarantine.parquet",
    ], "no temporary files are left behind"


def test_a_rerun_replaces_the_previous_output_files(tmp_path: Path) -> None:
    extract(tmp_path, "too_many_columns.csv")
    r = extract(tmp_path, "good.csv")
    assert r.accepted == 3 and quarantined(r) == []


def test_one_log_line_per_extract_has_the_counts_and_no_person_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="linkage.sources"):
        extract(tmp_path, "too_many_columns.csv")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("linkage.sources")]
    assert len(lines) == 1
    assert "delivered=3 accepted=2 quarantined=1 blank_lines=0 duplicates=0" in lines[0]
    for value in ("Lovelace", "Turing", "00017", "0123456789", "EXTRA"):
        assert value not in lines[0]


def test_the_result_refuses_to_exist_when_the_books_do_not_balance(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not reconcile"):
        ExtractResult("a", "s", None, tmp_path, tmp_path, 5, 3, 1, 0, 0, [])


# --- A. file format -------------------------------------------------------------------------------


def test_a1_a_row_with_too_many_columns_is_quarantined_and_the_others_load(tmp_path: Path) -> None:
    r = extract(tmp_path, "too_many_columns.csv")
    assert (r.delivered, r.accepted, r.quarantined) == (3, 2, 1)
    [q] = quarantined(r)
    assert q["_line"] == 3
    assert q["reason"] == "too_many_columns"
    assert q["detail"] == "6 field(s) where the header has 5"
    assert q["raw"] == "00018,Alan,Turing,1972-06-23,9434765919,EXTRA"
    assert [row["_line"] for row in accepted(r)] == [2, 4]


def test_a2_a_row_with_too_few_columns_is_quarantined_as_missing_columns(tmp_path: Path) -> None:
    r = extract(tmp_path, "too_few_columns.csv")
    assert (r.delivered, r.accepted, r.quarantined) == (3, 2, 1)
    [q] = quarantined(r)
    assert (q["_line"], q["reason"], q["raw"]) == (
        3,
        "missing_columns",
        "00018,Alan,Turing,1972-06-23",
    )


def test_a3_a_semicolon_file_is_rejected_naming_both_delimiters(tmp_path: Path) -> None:
    err = rejected(tmp_path, "semicolon_delimited.csv")
    assert err.reason == "wrong_delimiter"
    assert "seems delimited by ';', not ','" in err.detail
    assert "delimiter: ';'" in err.detail


def test_a3_a_tab_file_declared_as_comma_is_rejected_as_wrong_delimiter(tmp_path: Path) -> None:
    data = ("\t".join(COLUMNS) + "\n" + "\t".join(ROW) + "\n").encode()
    assert rejected(tmp_path, data).reason == "wrong_delimiter"


def test_a3_a_declared_semicolon_delimiter_is_honoured(tmp_path: Path) -> None:
    r = extract(tmp_path, "semicolon_delimited.csv", delimiter=";")
    assert accepted(r)[0]["family_name"] == "Lovelace"


def test_a4_a_utf8_bom_is_stripped_so_the_header_matches(tmp_path: Path) -> None:
    r = extract(tmp_path, "utf8_bom.csv")
    [row] = accepted(r)
    assert row["record_id"] == "00017"  # the BOM did not stick to the first header name
    assert (row["given_name"], row["family_name"], row["_line"]) == ("Zoë", "Brontë", 2)


def test_a5_undeclared_cp1252_bytes_reject_the_file_with_the_line_and_a_hint(
    tmp_path: Path,
) -> None:
    data = csv_bytes([COLUMNS, ROW, ["00018", "Siobhán", "O’Brien", "1972-06-23", "1"]], "cp1252")
    err = rejected(tmp_path, data)
    assert err.reason == "invalid_encoding"
    assert "line 3: byte 0xE1" in err.detail
    assert "encoding: cp1252" in err.detail


def test_a5_cp1252_bytes_late_in_a_large_file_still_reject_it_with_the_right_line(
    tmp_path: Path,
) -> None:
    rows = [COLUMNS] + [[f"{i:05d}", "Ada", "Lovelace", "1985-12-10", "1"] for i in range(20_000)]
    rows.append(["99999", "Zoë", "Brontë", "1985-12-10", "1"])
    err = rejected(tmp_path, csv_bytes(rows, "cp1252"))
    assert err.reason == "invalid_encoding" and "line 20002: byte 0xEB" in err.detail


def test_a6_declared_cp1252_is_transcoded_and_names_survive(tmp_path: Path) -> None:
    data = csv_bytes([COLUMNS, ["00017", "Zoë", "O’Brien", "1985-12-10", "0123456789"]], "cp1252")
    r = extract(tmp_path, data, encoding="cp1252")
    [row] = accepted(r)
    assert (row["given_name"], row["family_name"]) == ("Zoë", "O’Brien")


def test_a6_declared_latin1_reads_latin1_text(tmp_path: Path) -> None:
    data = csv_bytes([COLUMNS, ["00017", "Zoë", "Müller", "1985-12-10", "1"]], "latin-1")
    [row] = accepted(extract(tmp_path, data, encoding="latin-1"))
    assert (row["given_name"], row["family_name"]) == ("Zoë", "Müller")


def test_a6_cp1252_bytes_declared_as_latin1_are_rejected_rather_than_garbled(
    tmp_path: Path,
) -> None:
    data = csv_bytes([COLUMNS, ["00017", "Ada", "O’Brien", "1985-12-10", "1"]], "cp1252")
    err = rejected(tmp_path, data, encoding="latin-1")
    assert err.reason == "invalid_encoding"
    assert "line 2: byte 0x92" in err.detail and "encoding: cp1252" in err.detail


def test_a6_a_utf8_file_declared_as_cp1252_is_rejected_rather_than_garbled(tmp_path: Path) -> None:
    data = csv_bytes([COLUMNS, ["00017", "Zoë", "Brontë", "1985-12-10", "1"]], "utf-8")
    err = rejected(tmp_path, data, encoding="cp1252")
    assert err.reason == "invalid_encoding"
    assert "encoding: utf-8" in err.detail and "line 2" in err.detail


def test_a6_a_utf16_file_is_rejected_as_invalid_encoding(tmp_path: Path) -> None:
    data = (HEADER + "\n" + ",".join(ROW) + "\n").encode("utf-16")
    assert rejected(tmp_path, data).reason == "invalid_encoding"


def test_a7_a_quoted_embedded_newline_is_one_record_with_the_newline_kept(tmp_path: Path) -> None:
    r = extract(tmp_path, "quoted_newline.csv")
    assert (r.delivered, r.accepted, r.quarantined) == (2, 2, 0)
    rows = accepted(r)
    assert rows[0]["family_name"] == "Lovelace\nKing"
    assert [row["_line"] for row in rows] == [2, 4]  # the second record starts on line 4


def test_a8_an_unquoted_embedded_newline_quarantines_both_fragments(tmp_path: Path) -> None:
    r = extract(tmp_path, "unquoted_newline.csv")
    assert (r.delivered, r.accepted, r.quarantined) == (3, 1, 2)
    q = quarantined(r)
    assert [(x["_line"], x["reason"]) for x in q] == [
        (2, "missing_columns"),
        (3, "missing_columns"),
    ]
    assert [x["raw"] for x in q] == ["00017,Ada,Lovelace", "King,1985-12-10,0123456789"]
    assert [row["record_id"] for row in accepted(r)] == ["00018"]


def test_a9_a_stray_quote_inside_an_unquoted_field_loads_literally(tmp_path: Path) -> None:
    r = extract(tmp_path, "stray_quote.csv")
    assert r.accepted == 2 and r.quarantined == 0
    assert accepted(r)[0]["family_name"] == 'O"Brien'


def test_a9_text_after_a_closing_quote_is_quarantined_not_silently_altered(tmp_path: Path) -> None:
    data = (HEADER + '\n00017,Siobhan,"O"Brien,1985-12-10,1\n' + ",".join(ROW) + "\n").encode()
    r = extract(tmp_path, data)
    assert (r.delivered, r.accepted, r.quarantined) == (2, 1, 1)
    [q] = quarantined(r)
    assert (q["_line"], q["reason"]) == (2, "malformed_quote")
    assert q["raw"] == '00017,Siobhan,"O"Brien,1985-12-10,1'


def test_a10_blank_lines_are_counted_not_loaded_and_not_quarantined(tmp_path: Path) -> None:
    r = extract(tmp_path, "blank_lines.csv")
    assert (r.delivered, r.accepted, r.quarantined, r.blank_lines) == (7, 3, 0, 4)
    assert [row["_line"] for row in accepted(r)] == [2, 4, 7]


def test_a10_blank_lines_before_the_header_are_counted_too(tmp_path: Path) -> None:
    r = extract(tmp_path, ("\n\n" + HEADER + "\n" + ",".join(ROW) + "\n").encode())
    assert (r.delivered, r.blank_lines, r.accepted) == (3, 2, 1)
    assert accepted(r)[0]["_line"] == 4


def test_a11_a_zero_byte_file_is_rejected_as_empty(tmp_path: Path) -> None:
    assert rejected(tmp_path, "empty.csv").reason == "empty_file"


def test_a11_a_file_of_blank_lines_only_is_rejected_as_empty(tmp_path: Path) -> None:
    assert rejected(tmp_path, b"\n\n\n").reason == "empty_file"


def test_a12_a_header_only_file_loads_with_zero_rows(tmp_path: Path) -> None:
    r = extract(tmp_path, "header_only.csv")
    assert (r.delivered, r.accepted, r.quarantined) == (0, 0, 0)
    assert pq.read_table(r.accepted_path).num_rows == 0
    assert pq.read_schema(r.accepted_path).names == [*COLUMNS, "_line"]


@pytest.mark.parametrize(
    ("what", "payload"),
    [
        ("gzip", gzip.compress(f"{HEADER}\n".encode())),
        ("xlsx", "xlsx"),
        ("zip", "zip"),
        ("parquet", "parquet"),
        ("xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100),
    ],
)
def test_a14_a_compressed_excel_or_parquet_file_delivered_as_csv_is_rejected(
    tmp_path: Path, what: str, payload: bytes | str
) -> None:
    if payload in ("xlsx", "zip"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("xl/workbook.xml" if payload == "xlsx" else "data.csv", "<workbook/>")
        payload = buf.getvalue()
    elif payload == "parquet":
        buf = io.BytesIO()
        pq.write_table(pa.table({"record_id": ["1"]}), buf)
        payload = buf.getvalue()
    assert isinstance(payload, bytes)
    err = rejected(tmp_path, payload)
    assert err.reason == "not_csv"
    if what == "xlsx":
        assert "Excel workbook" in err.detail


# --- B. schema drift ------------------------------------------------------------------------------


def test_b1_a_missing_column_rejects_the_file_naming_it(tmp_path: Path) -> None:
    err = rejected(tmp_path, "missing_column.csv")
    assert err.reason == "missing_columns"
    assert "['family_name']" in err.detail


def test_b2_a_renamed_column_rejects_the_file_naming_both_names(tmp_path: Path) -> None:
    err = rejected(tmp_path, "renamed_column.csv")
    assert err.reason == "missing_columns"
    assert "missing column(s) ['family_name']" in err.detail
    assert "unexpected column(s) ['surname']" in err.detail


def test_b2_a_column_renamed_only_in_case_is_rejected_with_a_hint(tmp_path: Path) -> None:
    err = rejected(tmp_path, (HEADER.replace("family_name", "Family_Name") + "\n").encode())
    assert "'Family_Name' differs from 'family_name' only in case" in err.detail


def test_b3_an_extra_column_is_dropped_never_stored_and_listed(tmp_path: Path) -> None:
    r = extract(tmp_path, "extra_column.csv")
    assert r.columns_dropped == ["ethnicity"]
    assert r.accepted == 2
    assert pq.read_schema(r.accepted_path).names == [*COLUMNS, "_line"]
    for path in (r.accepted_path, r.quarantine_path):
        assert b"SECRET" not in path.read_bytes()


def test_b4_columns_in_another_order_are_remapped_by_name(tmp_path: Path) -> None:
    r = extract(tmp_path, "reordered_columns.csv")
    rows = accepted(r)
    assert pq.read_schema(r.accepted_path).names == [*COLUMNS, "_line"]
    assert rows[0] == {
        "record_id": "00017",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "date_of_birth": "1985-12-10",
        "nhs_number": "0123456789",
        "_line": 2,
    }


def test_b_a_header_naming_a_column_twice_is_rejected(tmp_path: Path) -> None:
    assert rejected(tmp_path, (HEADER + ",given_name\n").encode()).reason == "duplicate_columns"


# --- C. delivery ----------------------------------------------------------------------------------


def test_c3_exact_duplicates_are_dropped_and_counted_conflicting_ones_kept(tmp_path: Path) -> None:
    r = extract(tmp_path, "exact_duplicates.csv")
    assert (r.delivered, r.accepted, r.duplicates, r.quarantined) == (5, 3, 2, 0)
    rows = accepted(r)
    assert [row["_line"] for row in rows] == [2, 3, 5], "the first of each is kept"
    assert [row["family_name"] for row in rows] == ["Lovelace", "Turing", "TURING"]


def test_c3_rows_differing_only_in_a_dropped_column_are_exact_duplicates(tmp_path: Path) -> None:
    data = (HEADER + ",note\n" + ",".join(ROW) + ",a\n" + ",".join(ROW) + ",b\n").encode()
    r = extract(tmp_path, data)
    assert (r.accepted, r.duplicates, r.columns_dropped) == (1, 1, ["note"])


def test_a_row_repeating_the_header_is_quarantined_not_loaded(tmp_path: Path) -> None:
    data = (HEADER + "\n" + ",".join(ROW) + "\n" + HEADER + "\n").encode()
    r = extract(tmp_path, data)
    assert [(q["_line"], q["reason"]) for q in quarantined(r)] == [(3, "repeated_header")]


def test_a_drop_folder_reads_the_last_matching_file_by_name(tmp_path: Path) -> None:
    r = extract(tmp_path, FIXTURES / "drops")
    assert r.source.endswith("agency_2024-02-29.csv")
    assert accepted(r)[0]["record_id"] == "00002"


def test_an_empty_drop_folder_is_a_missing_delivery_naming_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "drops"
    folder.mkdir()
    with pytest.raises(DeliveryMissing, match=str(folder)):
        extract(tmp_path, folder)


def test_a_missing_file_is_a_missing_delivery(tmp_path: Path) -> None:
    with pytest.raises(DeliveryMissing, match="does not exist"):
        extract(tmp_path, tmp_path / "nope.csv")


# --- the parser's own failures ------------------------------------------------------------------


def test_an_unterminated_quote_quarantines_every_line_it_swallowed(tmp_path: Path) -> None:
    data = (
        HEADER + "\n" + ",".join(ROW) + '\n00018,"Alan,Turing,1972-06-23,1\n00019,Grace,Hopper,'
        "1990-12-09,1\n"
    ).encode()
    r = extract(tmp_path, data)
    assert (r.delivered, r.accepted, r.quarantined) == (3, 1, 2)
    q = quarantined(r)
    assert [(x["_line"], x["reason"]) for x in q] == [
        (3, "unterminated_quote"),
        (4, "unterminated_quote"),
    ]
    assert q[1]["raw"] == "00019,Grace,Hopper,1990-12-09,1"


def test_a_runaway_quote_is_contained_and_later_lines_still_load(tmp_path: Path) -> None:
    filler = [f"{i:05d},x,y,1990-01-01,1" for i in range(6_000)]  # > 131072 characters
    text = "\n".join([HEADER, '00001,"Runaway,Quote,1990-01-01,1', *filler]) + "\n"
    r = extract(tmp_path, text.encode())
    assert balanced(r)
    reasons = Counter(q["reason"] for q in quarantined(r))
    assert set(reasons) == {"field_too_large"}
    assert r.accepted > 0, "the parser resynchronises after the oversized field"


def test_a_file_with_carriage_return_line_ends_counts_lines_correctly(tmp_path: Path) -> None:
    data = (HEADER + "\r\n" + ",".join(ROW) + "\r\n\r\n" + ",".join(ROW[:3]) + "\r\n").encode()
    r = extract(tmp_path, data)
    assert (r.accepted, r.blank_lines, r.quarantined) == (1, 1, 1)
    assert quarantined(r)[0]["_line"] == 4


def test_batches_split_the_output_without_losing_or_reordering_rows(tmp_path: Path) -> None:
    rows = [COLUMNS] + [[f"{i:05d}", "A", "B", "1990-01-01", str(i % 7)] for i in range(25)]
    path = tmp_path / "d.csv"
    path.write_bytes(csv_bytes(rows + rows[1:4]))
    r = read_csv_extract(make_agency(path), make_contract(tmp_path), tmp_path / "out", batch_size=4)
    assert (r.accepted, r.duplicates) == (25, 3)
    assert [row["record_id"] for row in accepted(r)] == [f"{i:05d}" for i in range(25)]


def test_a_value_holding_a_nul_character_is_kept_and_deduplicated(tmp_path: Path) -> None:
    data = (HEADER + "\n00017,A\x00B,C,D,E\n00017,A,B\x00C,D,E\n00017,A\x00B,C,D,E\n").encode()
    r = extract(tmp_path, data)
    assert (r.accepted, r.duplicates) == (2, 1)
    assert [row["given_name"] for row in accepted(r)] == ["A\x00B", "A"]


@pytest.mark.parametrize(
    ("reader", "blank"),
    [("_read_fast", b""), ("_parse", b"\n")],  # a blank line is not plain
)
def test_a_file_that_grows_while_read_is_a_transient_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str, blank: bytes
) -> None:
    path = tmp_path / "growing.csv"
    path.write_bytes(blank + csv_bytes([COLUMNS, ROW]))
    real = getattr(__import__("linkage.sources.csv", fromlist=[reader]), reader)
    read = []

    def read_then_grow(*args: Any, **kwargs: Any) -> Any:
        counts = real(*args, **kwargs)
        read.append(counts)
        with path.open("ab") as f:
            f.write(b"00018,Alan,Turing,1972-06-23,1\n")
        return counts

    monkeypatch.setattr(f"linkage.sources.csv.{reader}", read_then_grow)
    with pytest.raises(TransientSourceError, match="still being written"):
        read_extract(make_agency(path), make_contract(tmp_path), tmp_path / "out")
    assert read and read[0] is not None  # the reader meant was the one that read it
    assert not (tmp_path / "out" / "test_agency.parquet").exists()


def test_a_contract_using_the_reserved_line_column_is_an_error(tmp_path: Path) -> None:
    contract = make_contract(tmp_path, [*COLUMNS, "_line"])
    path = tmp_path / "d.csv"
    path.write_bytes(csv_bytes([[*COLUMNS, "_line"], [*ROW, "1"]]))
    with pytest.raises(SourceError, match="reserved"):
        read_extract(make_agency(path), contract, tmp_path / "out")


# --- property: every line is accounted for ------------------------------------------------------

PROP_COLUMNS = ["id", "name", "town"]
_value = st.text(alphabet='ab ,"\n\r\t;é', max_size=6)


def _csv_line(fields: list[str], eol: str) -> str:
    """One record, minimally quoted; a stray quote mid-field is left as is (``O"Brien``).

    (Python 3.11's csv.writer leaves a lone CR unquoted when the
    line terminator is LF, which makes it an unquoted line break: case A8, not a good row.)"""

    def quote(v: str) -> str:
        # A quote inside an unquoted field stays literal (A9), so it is left unquoted.
        if any(ch in v for ch in ",\r\n") or v.startswith('"') or (len(fields) == 1 and v == ""):
            return '"' + v.replace('"', '""') + '"'
        return v

    return ",".join(quote(v) for v in fields) + eol


def _is_blank_text(line: str) -> bool:
    return not line.strip()


@st.composite
def messy_files(draw: st.DrawFn) -> tuple[list[tuple[str, Any]], str]:
    """A list of (kind, payload) items and the line terminator the file is written with."""
    items: list[tuple[str, Any]] = []
    good: list[list[str]] = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["good", "good", "good", "blank", "ragged", "duplicate"]))
        if kind == "duplicate" and not good:
            kind = "good"
        if kind == "good":
            row = draw(st.lists(_value, min_size=3, max_size=3))
            if row == PROP_COLUMNS:
                continue
            good.append(row)
            items.append(("good", row))
        elif kind == "duplicate":
            items.append(("good", draw(st.sampled_from(good))))
        elif kind == "blank":
            items.append(("blank", draw(st.sampled_from(["", " ", "  \t"]))))
        else:
            width = draw(st.sampled_from([1, 2, 4, 5]))
            row = draw(st.lists(_value, min_size=width, max_size=width))
            if width == 1 and _is_blank_text(row[0]):
                row = ["x" + row[0]]  # a one-field row of spaces would be a blank line
            items.append(("ragged", row))
    return items, draw(st.sampled_from(["\n", "\r\n"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messy_files())
def test_property_every_delivered_record_is_accounted_for_and_good_rows_load_once(
    case: tuple[list[tuple[str, Any]], str],
) -> None:
    items, eol = case
    out = io.StringIO()
    out.write(_csv_line(PROP_COLUMNS, eol))
    lines: list[int] = []  # the line each item starts on
    line = 2
    for kind, payload in items:
        lines.append(line)
        written = payload + eol if kind == "blank" else _csv_line(payload, eol)
        out.write(written)
        line += len(written.splitlines())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "messy.csv"
        path.write_text(out.getvalue(), encoding="utf-8", newline="")
        contract = make_contract(folder, PROP_COLUMNS)
        r = read_extract(make_agency(path), contract, folder / "out")
        acc = accepted(r)
        qua = quarantined(r)

    expected_good: list[tuple[tuple[str, ...], int]] = []
    seen: set[tuple[str, ...]] = set()
    duplicates = 0
    for (kind, payload), start in zip(items, lines, strict=True):
        if kind == "good":
            if tuple(payload) in seen:
                duplicates += 1
            else:
                seen.add(tuple(payload))
                expected_good.append((tuple(payload), start))
    ragged = [start for (kind, _), start in zip(items, lines, strict=True) if kind == "ragged"]

    assert balanced(r)
    assert r.delivered == len(items)
    assert r.blank_lines == sum(kind == "blank" for kind, _ in items)
    assert r.duplicates == duplicates
    assert [(tuple(a[c] for c in PROP_COLUMNS), a["_line"]) for a in acc] == expected_good
    assert [q["_line"] for q in qua] == ragged
    assert {q["reason"] for q in qua} <= {"missing_columns", "too_many_columns"}


# --- Parquet --------------------------------------------------------------------------------------


def write_parquet(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


def parquet_extract(tmp_path: Path, table: pa.Table | bytes, **kw: Any) -> ExtractResult:
    path = tmp_path / "delivery.parquet"
    if isinstance(table, bytes):
        path.write_bytes(table)
    else:
        write_parquet(path, table)
    return read_extract(
        make_agency(path, kind="parquet"), make_contract(tmp_path), tmp_path / "out"
    )


def people_table(**overrides: Any) -> pa.Table:
    data: dict[str, Any] = {
        "record_id": pa.array(["00017", "00018", None]),
        "given_name": pa.array(["Ada", "Alan", "Grace"]),
        "family_name": pa.array(["Lovelace", "Turing", "Hopper"]).dictionary_encode(),
        "date_of_birth": pa.array([dt.date(1985, 12, 10), dt.date(1972, 6, 23), None]),
        "nhs_number": pa.array([123456789, 9434765919, 4567890], pa.int64()),
    }
    data.update(overrides)
    return pa.table(data)


def test_parquet_columns_become_text_dates_iso_ints_digits_nulls_null(tmp_path: Path) -> None:
    r = parquet_extract(tmp_path, people_table())
    assert (r.delivered, r.accepted, r.blank_lines, r.quarantined) == (3, 3, 0, 0)
    assert r.sha256 is not None
    schema = pq.read_schema(r.accepted_path)
    assert schema.names == [*COLUMNS, "_line"]
    assert all(schema.field(c).type == pa.string() for c in COLUMNS)
    rows = accepted(r)
    assert rows[0] == {
        "record_id": "00017",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "date_of_birth": "1985-12-10",
        "nhs_number": "123456789",
        "_line": 1,
    }
    assert rows[2]["record_id"] is None and rows[2]["date_of_birth"] is None
    assert [row["_line"] for row in rows] == [1, 2, 3]


def test_parquet_extra_columns_are_dropped_and_order_is_remapped(tmp_path: Path) -> None:
    t = people_table().append_column("ethnicity", pa.array(["SECRET"] * 3))
    t = t.select(["nhs_number", "ethnicity", *COLUMNS[:-1]])
    r = parquet_extract(tmp_path, t)
    assert r.columns_dropped == ["ethnicity"]
    assert pq.read_schema(r.accepted_path).names == [*COLUMNS, "_line"]
    assert b"SECRET" not in r.accepted_path.read_bytes()


def test_parquet_a_missing_column_rejects_the_file(tmp_path: Path) -> None:
    t = people_table().drop_columns(["family_name"])
    with pytest.raises(FileRejected) as info:
        parquet_extract(tmp_path, t)
    assert info.value.reason == "missing_columns" and "family_name" in info.value.detail


def test_parquet_a_renamed_column_rejects_the_file_naming_both(tmp_path: Path) -> None:
    t = people_table().rename_columns(
        ["record_id", "given_name", "surname", "date_of_birth", "nhs_number"]
    )
    with pytest.raises(FileRejected) as info:
        parquet_extract(tmp_path, t)
    assert "family_name" in info.value.detail and "surname" in info.value.detail


def test_parquet_exact_duplicates_and_null_rows_are_deduplicated_exactly(tmp_path: Path) -> None:
    t = people_table()
    t = pa.concat_tables([t, t.slice(0, 1), t.slice(2, 1)])
    r = parquet_extract(tmp_path, t)
    assert (r.delivered, r.accepted, r.duplicates) == (5, 3, 2)
    # A NULL differs from an empty string.
    t2 = pa.table({c: pa.array(["x", "x"]) for c in COLUMNS}).set_column(
        0, "record_id", pa.array([None, ""])
    )
    r2 = parquet_extract(tmp_path, t2)
    assert (r2.accepted, r2.duplicates) == (2, 0)


def test_parquet_a_csv_delivered_as_parquet_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FileRejected) as info:
        parquet_extract(tmp_path, (FIXTURES / "good.csv").read_bytes())
    assert info.value.reason == "not_parquet" and "text" in info.value.detail


def test_parquet_a_zero_byte_file_is_rejected_as_empty(tmp_path: Path) -> None:
    with pytest.raises(FileRejected) as info:
        parquet_extract(tmp_path, b"")
    assert info.value.reason == "empty_file"


def test_parquet_a_truncated_file_is_rejected(tmp_path: Path) -> None:
    buf = io.BytesIO()
    pq.write_table(people_table(), buf)
    with pytest.raises(FileRejected) as info:
        parquet_extract(tmp_path, buf.getvalue()[:-30])
    assert info.value.reason == "not_parquet"


def test_parquet_a_nested_column_is_rejected_as_unsupported(tmp_path: Path) -> None:
    t = people_table(given_name=pa.array([["Ada"], ["Alan"], ["Grace"]]))
    with pytest.raises(FileRejected) as info:
        parquet_extract(tmp_path, t)
    assert info.value.reason == "unsupported_type" and "given_name" in info.value.detail


def test_parquet_invalid_utf8_in_a_binary_column_is_rejected(tmp_path: Path) -> None:
    t = people_table(given_name=pa.array([b"Ada", b"Zo\xeb", b"Grace"], pa.binary()))
    with pytest.raises(FileRejected) as info:
        parquet_extract(tmp_path, t)
    assert info.value.reason == "invalid_encoding"


def test_parquet_batches_keep_row_numbers_and_drop_duplicates_across_batches(
    tmp_path: Path,
) -> None:
    n = 50
    t = pa.table({c: pa.array([f"{c}{i % 40}" for i in range(n)]) for c in COLUMNS})
    path = write_parquet(tmp_path / "d.parquet", t)
    r = read_parquet_extract(
        make_agency(path, kind="parquet"), make_contract(tmp_path), tmp_path / "out", batch_size=7
    )
    assert (r.delivered, r.accepted, r.duplicates) == (50, 40, 10)
    assert [row["_line"] for row in accepted(r)] == list(range(1, 41))


def test_parquet_drop_folder_reads_the_last_file_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "drops"
    folder.mkdir()
    write_parquet(folder / "p_2024-01.parquet", people_table())
    write_parquet(folder / "p_2024-02.parquet", people_table().slice(0, 1))
    shutil.copy(FIXTURES / "good.csv", folder / "p_2024-03.csv")  # not matching *.parquet
    r = read_extract(make_agency(folder, kind="parquet"), make_contract(tmp_path), tmp_path / "o")
    assert r.source.endswith("p_2024-02.parquet") and r.accepted == 1


# --- the DuckDB fast path for clean CSV files -----------------------------------------------------


def _read_both(
    path: Path, folder: Path, columns: list[str], duckdb_config: DuckDBConfig | None = None
) -> tuple[Any, Any, bool]:
    """(outcome with the fast path allowed, outcome with the parser only, whether the fast path
    read the file); an outcome is the books and rows, or the rejection."""
    import linkage.sources.csv as csv_source

    contract = make_contract(folder, columns)
    used = []
    real_fast, real_scan = csv_source._read_fast, csv_source._scan

    def spy(*a: Any) -> Any:
        counts = real_fast(*a)
        used.append(counts is not None)
        return counts

    def outcome(out: Path) -> Any:
        try:
            r = read_extract(make_agency(path), contract, out, duckdb_config)
        except FileRejected as e:
            return ("rejected", e.reason)
        books = (r.sha256, r.delivered, r.accepted, r.quarantined, r.blank_lines, r.duplicates)
        return books, accepted(r), quarantined(r)

    with mock.patch.object(csv_source, "_read_fast", spy):
        fast = outcome(folder / "fast")
    not_plain = csv_source._Scan
    with mock.patch.object(
        csv_source, "_scan", lambda p: not_plain(real_scan(p).sha256, 0, 0, simple=False)
    ):
        slow = outcome(folder / "slow")
    return fast, slow, any(used)


# Fields as written in a file: plain, quoted, and the near misses the two readers could differ on
# (a space beside a quote, a stray quote, text after a closing quote, a quoted line break).
_FIELDS = st.sampled_from(
    [
        "a",
        "Zoë",
        "",
        " a ",
        "x",
        '"a,b"',
        '"a""b"',
        '""',
        '"\n"',
        ' "a"',
        '"a" ',
        'a"b',
        '"a"b',
        "\t",
    ]
)
_LINES = st.one_of(
    st.lists(_FIELDS, min_size=3, max_size=3).map(",".join),  # mostly rows of the right width
    st.lists(_FIELDS, min_size=3, max_size=3).map(",".join),
    st.lists(_FIELDS, min_size=0, max_size=5).map(",".join),
    st.sampled_from(["x,y,z", "a,a,a", ",,", ",,,", "a,b,c,"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LINES, max_size=12), st.booleans())
def test_property_the_duckdb_reader_reads_what_the_parser_reads_or_leaves_it_to_the_parser(
    lines: list[str], final_newline: bool
) -> None:
    text = "x,y,z\n" + "\n".join(lines) + ("\n" if final_newline else "")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "d.csv"
        path.write_text(text, encoding="utf-8", newline="")
        fast, slow, _ = _read_both(path, folder, ["x", "y", "z"])
    assert fast == slow


def test_a_plain_file_is_read_by_duckdb_with_its_lines_duplicates_and_quoted_commas(
    tmp_path: Path,
) -> None:
    rows = [
        ROW,
        ["1", "Grace", "Hopper", "1906-12-09", ""],
        ROW,
        ["2", "O'Neil, Jr", 'Say "hi"', "", "9"],
    ]
    path = tmp_path / "d.csv"
    path.write_bytes(csv_bytes([COLUMNS, *rows]))
    fast, slow, used = _read_both(path, tmp_path, COLUMNS)
    assert used and fast == slow
    (_, delivered, n_accepted, n_quarantined, _, duplicates), got, _ = fast
    assert (delivered, n_accepted, n_quarantined, duplicates) == (4, 3, 0, 1)
    assert [r["_line"] for r in got] == [2, 3, 5]
    assert got[2]["given_name"] == "O'Neil, Jr" and got[2]["family_name"] == 'Say "hi"'
    assert got[1]["nhs_number"] == ""  # an empty field is text, as the parser reads it


@pytest.mark.parametrize(
    "body",
    [
        '1, "Ada",L,1985-12-10,9\n',  # a space before a quote: DuckDB would drop it
        "1,Ada,L,1985-12-10,9\r\n",  # a carriage return
        "\n1,Ada,L,1985-12-10,9\n",  # a blank line
        '1,"Ada\nB",L,1985-12-10,9\n',  # a quoted line break
        f"{HEADER}\n",  # the header again
        "1,Ada,L\n",  # a short row
    ],
)
def test_a_file_with_anything_the_readers_could_differ_on_goes_to_the_parser(
    tmp_path: Path, body: str
) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(f"{HEADER}\n{body}".encode())
    fast, slow, used = _read_both(path, tmp_path, COLUMNS)
    assert not used and fast == slow


def test_a_file_over_a_quarter_of_the_duckdb_memory_limit_goes_to_the_parser(
    tmp_path: Path,
) -> None:
    """The parser's memory stays flat; DuckDB would hold the whole file, past its limit."""
    rows = [[f"{i:05d}", "Ada", "Lovelace", "1985-12-10", f"{i:010d}"] for i in range(8_000)]
    path = tmp_path / "d.csv"
    path.write_bytes(csv_bytes([COLUMNS, *rows]))  # about 330 kB
    for limit, fast in (("1GB", True), ("1MB", False)):
        config = DuckDBConfig(memory_limit=limit, temp_directory=tmp_path / "spill", threads=1)
        (tmp_path / limit).mkdir()
        got, slow, used = _read_both(path, tmp_path / limit, COLUMNS, config)
        assert used == fast and got == slow and got[0][2] == 8_000


@pytest.mark.parametrize("first", ["\n", "  \n", "\t\n"])
def test_blank_lines_before_the_header_go_to_the_parser(tmp_path: Path, first: str) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(f"{first}{HEADER}\n1,Ada,L,1985-12-10,9\n".encode())
    fast, slow, used = _read_both(path, tmp_path, COLUMNS)
    assert not used and fast == slow
    assert fast[0][1:6] == (2, 1, 0, 1, 0)  # delivered, accepted, quarantined, blank, duplicates


def test_a_crlf_file_goes_to_the_parser_and_loads_whole(tmp_path: Path) -> None:
    """DuckDB 2.0.1's strict mode misreads CRLF line ends (no rows, or an error)."""
    path = tmp_path / "d.csv"
    path.write_bytes(csv_bytes([COLUMNS, ROW]).replace(b"\n", b"\r\n"))
    fast, slow, used = _read_both(path, tmp_path, COLUMNS)
    assert not used and fast == slow and fast[0][2] == 1
