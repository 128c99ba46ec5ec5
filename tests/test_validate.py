"""Contract validation with Great Expectations: rows breaking a rule are quarantined, none is lost.

Case IDs (B5, C3, D7...) refer to the bad-inputs guide. Fixtures are small CSV texts written by
the tests, each with its declared outcome: the ``_line`` and reasons of every quarantined row.
All data is synthetic.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkage.config import Agency
from linkage.contracts import (
    AllowedValues,
    Contract,
    DateFormat,
    MaxLength,
    NullShare,
    Pattern,
    Required,
    RowCount,
    Unique,
    load_contract,
    strftime_from_contract_format,
)
from linkage.errors import ContractError
from linkage.sources import QUARANTINE_SCHEMA, ExtractResult, read_extract
from linkage.validate import (
    ExpectationErrored,
    ExtractChanged,
    ValidationResult,
    build_suite,
    validate_extract,
)

REPO = Path(__file__).resolve().parents[1]
NHS_CONTRACT = REPO / "data_contracts" / "nhs_trust.yaml"
HEADER = "record_id,given_name,date_of_birth,sex"
CANARY = "ZEBEDIAHCANARY"

# A contract with one rule of each row kind, plus a row-count rule.
CONTRACT_YAML = """\
apiVersion: v3.1.0
kind: DataContract
id: test_people
version: 1.0.0
status: active
customProperties:
  - property: quarantineThreshold
    value: {threshold}
schema:
  - name: people
    quality:
      - metric: rowCount
        mustBeGreaterThan: 0
    properties:
      - name: record_id
        logicalType: string
        required: true
        unique: true
        logicalTypeOptions: {{pattern: "^[0-9]{{4}}$"}}
      - name: given_name
        logicalType: string
        logicalTypeOptions: {{maxLength: 12}}
      - name: date_of_birth
        logicalType: string
        logicalTypeOptions: {{format: yyyy-MM-dd}}
      - name: sex
        logicalType: string
        quality:
          - metric: invalidValues
            arguments: {{validValues: [M, F, U]}}
            mustBe: 0
"""


# --- helpers --------------------------------------------------------------------------------------


def make_contract(folder: Path, *, threshold: float = 0.9, text: str | None = None) -> Contract:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "contract.yaml"
    path.write_text(text or CONTRACT_YAML.format(threshold=threshold), encoding="utf-8")
    return load_contract(path)


def make_agency(path: Path, kind: str = "csv") -> Agency:
    return Agency.model_validate(
        {
            "name": "people",
            "contract": str(path.parent / "contract.yaml"),
            "source": {"kind": kind, "path": str(path)},
            "mapping": {"source_record_id": "record_id"},
        }
    )


def extract(tmp_path: Path, text: str, contract: Contract | None = None) -> ExtractResult:
    contract = contract or make_contract(tmp_path)
    path = tmp_path / "delivery.csv"
    path.write_text(text, encoding="utf-8")
    return read_extract(make_agency(path), contract, tmp_path / "work")


def run(
    tmp_path: Path, text: str, *, threshold: float = 0.9
) -> tuple[ExtractResult, ValidationResult]:
    contract = make_contract(tmp_path, threshold=threshold)
    extracted = extract(tmp_path, text, contract)
    return extracted, validate_extract(extracted, contract, tmp_path / "results")


def quarantine(result: ExtractResult | ValidationResult) -> dict[int, str]:
    return {r["_line"]: r["reason"] for r in pq.read_table(result.quarantine_path).to_pylist()}


def accepted_lines(result: ExtractResult | ValidationResult) -> list[int]:
    return pq.read_table(result.accepted_path).column("_line").to_pylist()


def books_balance(e: ExtractResult, v: ValidationResult) -> bool:
    return e.delivered == (
        v.accepted + e.quarantined + v.quarantined + e.blank_lines + e.duplicates
    )


# --- compiling a contract to a suite --------------------------------------------------------------


def test_the_demo_contracts_rules_parse_into_typed_rules() -> None:
    contract = load_contract(NHS_CONTRACT)
    rules = contract.row_rules
    assert Required("patient_id") in rules and Unique("patient_id") in rules
    assert Pattern("patient_id", "^[0-9]{8}$") in rules
    assert Pattern("nhs_number", "^[0-9]{3} ?[0-9]{3} ?[0-9]{4}$") in rules  # from `quality`
    assert MaxLength("forename", 100) in rules
    assert DateFormat("date_of_birth", "yyyy-MM-dd", "%Y-%m-%d") in rules
    assert AllowedValues("gender", ("Male", "Female", "Unknown")) in rules
    # `unique: true` and the duplicateValues rule on the same column are one rule
    assert sum(isinstance(r, Unique) for r in rules) == 1
    assert RowCount(min_value=0, strict_min=True) in contract.table_rules
    assert NullShare("nhs_number", 20.0, strict=True) in contract.table_rules
    assert contract.unchecked_rules == ()
    assert contract.quarantine_threshold == 0.005


@pytest.mark.parametrize(
    ("contract_format", "strftime"),
    [
        ("yyyy-MM-dd", "%Y-%m-%d"),
        ("dd/MM/yyyy", "%d/%m/%Y"),
        ("yyyyMMdd", "%Y%m%d"),
        ("MMddyyyy", "%m%d%Y"),
        ("yyyy-MM-dd HH:mm:ss", "%Y-%m-%d %H:%M:%S"),
        ("yyyy-MM-dd'T'HH:mm", "%Y-%m-%dT%H:%M"),
        ("email", None),
        ("uuid", None),
        ("dd.MMM.yyyy", None),  # month names are not supported: not checked, so refused
    ],
)
def test_contract_date_formats_translate_to_strftime(
    contract_format: str, strftime: str | None
) -> None:
    assert strftime_from_contract_format(contract_format) == strftime


def test_each_rule_compiles_to_its_expectation(tmp_path: Path) -> None:
    suite = build_suite(make_contract(tmp_path))
    compiled = [
        (e.expectation_type, e.meta["rule"], e.meta["field"], e.meta["row_rule"])
        for e in suite.expectations
    ]
    assert compiled == [
        ("expect_column_values_to_not_be_null", "required", "record_id", True),
        ("expect_column_values_to_be_unique", "unique", "record_id", True),
        ("expect_column_values_to_match_regex", "pattern", "record_id", True),
        ("expect_column_value_lengths_to_be_between", "max_length", "given_name", True),
        ("expect_column_values_to_be_dates_in_format", "date_format", "date_of_birth", True),
        ("expect_column_values_to_be_in_set", "allowed_values", "sex", True),
        ("expect_table_row_count_to_be_between", "row_count", "_table", False),
    ]
    kwargs = {e.meta["rule"]: e.configuration.kwargs for e in suite.expectations}
    assert kwargs["pattern"]["regex"] == "^[0-9]{4}$"
    assert kwargs["max_length"]["max_value"] == 12
    assert kwargs["date_format"]["strftime_format"] == "%Y-%m-%d"
    assert kwargs["allowed_values"]["value_set"] == ["M", "F", "U"]
    assert kwargs["row_count"]["min_value"] == 0 and kwargs["row_count"]["strict_min"]


def test_build_suite_is_pure_the_same_contract_gives_the_same_suite(tmp_path: Path) -> None:
    contract = make_contract(tmp_path)
    first, second = build_suite(contract), build_suite(contract)
    assert [e.configuration.to_json_dict() for e in first.expectations] == [
        e.configuration.to_json_dict() for e in second.expectations
    ]
    assert first.name == second.name == "test_people-1.0.0"


def test_the_demo_nhs_contract_compiles_its_null_share_rule() -> None:
    suite = build_suite(load_contract(NHS_CONTRACT))
    share = next(e for e in suite.expectations if e.meta["rule"] == "null_share")
    assert share.expectation_type == "expect_column_proportion_of_non_null_values_to_be_between"
    assert share.configuration.kwargs["min_value"] == pytest.approx(0.8)
    assert share.configuration.kwargs["strict_min"] is True
    assert len(suite.expectations) == 15


def test_a_rule_nobody_checks_is_refused_naming_where_it_is(tmp_path: Path) -> None:
    text = CONTRACT_YAML.format(threshold=0.1).replace(
        "      - metric: rowCount\n        mustBeGreaterThan: 0\n",
        "      - type: sql\n        query: SELECT COUNT(*) FROM people\n        mustBe: 0\n"
        "      - type: text\n        description: documentation only, skipped\n",
    )
    contract = make_contract(tmp_path, text=text)
    assert contract.unchecked_rules == ("schema[0].quality[0]: sql rules are not checked",)
    with pytest.raises(ContractError, match=r"schema\[0\]\.quality\[0\]: sql rules"):
        build_suite(contract)


def test_an_invalid_pattern_is_refused_when_the_contract_loads(tmp_path: Path) -> None:
    text = CONTRACT_YAML.format(threshold=0.1).replace('"^[0-9]{4}$"', '"^[0-9"')
    with pytest.raises(ContractError, match=r"logicalTypeOptions\.pattern.*not a valid regular"):
        make_contract(tmp_path, text=text)


# --- fixtures with declared outcomes --------------------------------------------------------------

FIXTURES: dict[str, tuple[str, dict[int, str]]] = {
    # B5: type/format drift, the date of birth arrives as DD/MM/YYYY; D7: an impossible date
    "date_format_drift": (
        f"{HEADER}\n0001,Ada,1985-12-10,F\n0002,Alan,23/06/1912,M\n0003,Grace,2021-02-30,F\n",
        {3: "date_format:date_of_birth", 4: "date_format:date_of_birth"},
    ),
    # C3: conflicting duplicates: every row sharing the id goes; the exact repeat was dropped
    "conflicting_duplicates": (
        f"{HEADER}\n0001,Ada,1985-12-10,F\n0001,Adam,1985-12-10,M\n0001,Ada,1985-12-10,F\n"
        "0002,Alan,1912-06-23,M\n",
        {2: "unique:record_id", 3: "unique:record_id"},
    ),
    # missing required identifier: empty counts as missing; no pattern or unique breach for it
    "missing_required_id": (
        f"{HEADER}\n,Ada,1985-12-10,F\n,Alan,1912-06-23,M\n0003,Grace,1906-12-09,F\n",
        {2: "required:record_id", 3: "required:record_id"},
    ),
    # pattern breach: identifiers stay text, so 123 is not 0123
    "pattern_breach": (
        f"{HEADER}\n0123,Ada,1985-12-10,F\n123,Alan,1912-06-23,M\nAB12,Grace,1906-12-09,F\n",
        {3: "pattern:record_id", 4: "pattern:record_id"},
    ),
    # a value outside the allowed set (case matters); a missing value passes
    "value_outside_allowed_set": (
        f"{HEADER}\n0001,Ada,1985-12-10,X\n0002,Alan,1912-06-23,m\n0003,Grace,1906-12-09,\n",
        {2: "allowed_values:sex", 3: "allowed_values:sex"},
    ),
    "too_long": (
        f"{HEADER}\n0001,Bartholomew-Jo,1985-12-10,M\n0002,Bartholomew,1912-06-23,M\n",
        {2: "max_length:given_name"},
    ),
    # one row breaking several rules is quarantined once, with every reason in contract order
    "several_rules": (
        f"{HEADER}\n12a,Bartholomew-Jo,10/12/1985,Q\n0002,Alan,1912-06-23,M\n",
        {2: "pattern:record_id;max_length:given_name;date_format:date_of_birth;allowed_values:sex"},
    ),
    "all_good": (f"{HEADER}\n0001,Ada,1985-12-10,F\n0002,Alan,,\n", {}),
}


@pytest.mark.parametrize("case", FIXTURES)
def test_each_fixture_gets_its_declared_outcome(tmp_path: Path, case: str) -> None:
    text, expected = FIXTURES[case]
    e, v = run(tmp_path, text)
    assert quarantine(v) == expected
    assert v.quarantined == len(expected)
    assert set(accepted_lines(v)).isdisjoint(expected)
    assert books_balance(e, v)
    counts: dict[str, int] = {}
    for reasons in expected.values():
        for reason in reasons.split(";"):
            counts[reason] = counts.get(reason, 0) + 1
    assert v.reasons == counts


def test_format_drift_on_the_demo_nhs_contract_quarantines_by_pattern_and_date_format(
    tmp_path: Path,
) -> None:
    contract = load_contract(NHS_CONTRACT)
    header = ",".join(contract.column_names)
    good = "00000017,943 476 5919,Ada,,Lovelace,1985-12-10,Female,1 High St,Leeds,LS6 2AB"
    drift = "00000018,9434765918,Alan,Mathison,Turing,23/06/1912,Male,2 High St,Leeds,LS6 2AB"
    path = tmp_path / "nhs_trust.csv"
    path.write_text(f"{header}\n{good}\n{drift}\n", encoding="utf-8")
    extracted = read_extract(make_agency(path), contract, tmp_path / "work")
    v = validate_extract(extracted, contract, tmp_path / "work")
    assert quarantine(v) == {3: "pattern:date_of_birth;date_format:date_of_birth"}
    assert accepted_lines(v) == [2]
    assert pq.read_table(v.accepted_path).column("patient_id").to_pylist() == ["00000017"]
    # one row of two is far above the contract's 0.5% threshold: the extract must not be used
    assert v.quarantine_rate == 0.5 and v.quarantine_threshold == 0.005
    assert not v.success and "quarantineThreshold" in v.problems[0]


def test_a_parquet_extract_with_nulls_is_validated_the_same_way(tmp_path: Path) -> None:
    contract = make_contract(tmp_path)
    path = tmp_path / "delivery.parquet"
    pq.write_table(
        pa.table(
            {
                "record_id": ["0001", None, "0003"],
                "given_name": ["Ada", None, "Grace"],
                "date_of_birth": [None, "1912-06-23", "09/12/1906"],
                "sex": ["F", "M", None],
            }
        ),
        path,
    )
    extracted = read_extract(make_agency(path, "parquet"), contract, tmp_path / "work")
    v = validate_extract(extracted, contract, tmp_path / "work")
    lines = pq.read_table(extracted.accepted_path).column("_line").to_pylist()
    assert len(lines) == 1
    assert sorted(quarantine(v).values()) == ["date_format:date_of_birth", "required:record_id"]
    assert books_balance(extracted, v)


# --- the files, the books, the result -------------------------------------------------------------

MIXED = (
    f"{HEADER}\n"
    "0001,Ada,1985-12-10,F\n"  # 2 accepted
    "\n"  # 3 blank
    "0002,Alan,23/06/1912,M\n"  # 4 date_format
    "0003,Grace,1906-12-09\n"  # 5 missing_columns (reading)
    "0004,Alan,1912-06-23,M,extra\n"  # 6 too_many_columns (reading)
    "0005,Edsger,1930-05-11,M\n"  # 7 accepted
    "0005,Edsger,1930-05-11,M\n"  # 8 exact duplicate (reading)
    "0006,Barbara,1939-11-03,F\n"  # 9 unique
    "0006,Barbara,1939-11-30,F\n"  # 10 unique
    '0007,"Hopper, G",1906-12-09,F\n'  # 11 accepted (a comma inside a quoted value)
    ',"Smith, ""J""",1950-01-01,U\n'  # 12 required (raw text needs quoting)
)


def test_the_books_balance_across_reading_and_validation(tmp_path: Path) -> None:
    e, v = run(tmp_path, MIXED)
    assert (e.delivered, e.accepted, e.quarantined, e.blank_lines, e.duplicates) == (11, 7, 2, 1, 1)
    assert (v.checked, v.accepted, v.quarantined) == (7, 3, 4)
    assert books_balance(e, v)
    assert e.delivered == v.accepted + e.quarantined + v.quarantined + e.blank_lines + e.duplicates
    assert accepted_lines(v) == [2, 7, 11]
    assert quarantine(v) == {
        4: "date_format:date_of_birth",
        5: "missing_columns",
        6: "too_many_columns",
        9: "unique:record_id",
        10: "unique:record_id",
        12: "required:record_id",
    }
    assert v.reasons == {
        "date_format:date_of_birth": 1,
        "unique:record_id": 2,
        "required:record_id": 1,
    }
    assert v.accepted_path == e.accepted_path and v.quarantine_path == e.quarantine_path
    assert v.expectations == 7


def test_output_files_keep_their_schemas_and_restricted_modes(tmp_path: Path) -> None:
    e, v = run(tmp_path, MIXED)
    accepted = pq.read_table(v.accepted_path)
    assert accepted.schema.names == ["record_id", "given_name", "date_of_birth", "sex", "_line"]
    assert all(accepted.schema.field(c).type == pa.string() for c in accepted.schema.names[:-1])
    assert pq.read_schema(v.quarantine_path).equals(QUARANTINE_SCHEMA)
    assert stat.S_IMODE(os.stat(v.quarantine_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(v.accepted_path).st_mode) == 0o640
    assert not [p for p in v.accepted_path.parent.iterdir() if p.name.startswith(".")], "temp files"


def test_quarantined_rows_keep_their_values_as_one_csv_line_and_a_value_free_detail(
    tmp_path: Path,
) -> None:
    e, v = run(tmp_path, MIXED)
    rows = {r["_line"]: r for r in pq.read_table(v.quarantine_path).to_pylist()}
    assert rows[4]["raw"] == "0002,Alan,23/06/1912,M"
    assert next(csv.reader([rows[12]["raw"]])) == ["", 'Smith, "J"', "1950-01-01", "U"]
    assert rows[4]["detail"] == "date_of_birth is not a valid date in the format yyyy-MM-dd"
    assert "23/06/1912" not in rows[4]["detail"]
    assert rows[5]["raw"] == "0003,Grace,1906-12-09"  # reading's quarantine records are kept


def test_a_canary_value_reaches_the_quarantine_but_not_the_results_or_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """G5: a distinctive value that breaks a rule appears only in the quarantine file."""
    text = f"{HEADER}\n0001,{CANARY},1985-12-10,F\n0002,Ada,23/06/1912,{CANARY}\n{CANARY},Al,,M\n"
    with caplog.at_level(logging.DEBUG):
        e, v = run(tmp_path, text)
    assert v.quarantined == 3
    raw = " ".join(r["raw"] for r in pq.read_table(v.quarantine_path).to_pylist())
    assert raw.count(CANARY) == 3
    results = v.results_path.read_text(encoding="utf-8")
    assert CANARY not in results and "23/06/1912" not in results
    assert CANARY not in caplog.text and "23/06/1912" not in caplog.text
    assert CANARY not in repr(v) and CANARY not in repr(e)
    out, err = capfd.readouterr()
    assert CANARY not in out + err
    assert "Calculating Metrics" not in err, "GX progress bars are switched off"
    assert "ephemeral docs site" not in caplog.text + err, "GX's forced INFO logger is reset"
    assert [r.getMessage() for r in caplog.records if r.name == "linkage.validate"] == [
        "validated people against test_people v1.0.0: checked=3 accepted=0 quarantined=3 "
        "expectations=7 quarantine_rate=1.0000 success=False reasons={'pattern:record_id': 1, "
        "'max_length:given_name': 1, 'date_format:date_of_birth': 1, 'allowed_values:sex': 1}"
    ], "one log line of counts per extract"


def test_the_results_file_holds_counts_and_names_only(tmp_path: Path) -> None:
    e, v = run(tmp_path, MIXED)
    doc = json.loads(v.results_path.read_text(encoding="utf-8"))
    assert v.results_path == tmp_path / "results" / "people.validation.json"
    assert (doc["checked"], doc["accepted"], doc["quarantined"]) == (7, 3, 4)
    assert doc["reasons"] == v.reasons and doc["success"] is v.success
    allowed = {
        "expectation_type",
        "column",
        "rule",
        "where",
        "row_rule",
        "success",
        "element_count",
        "unexpected_count",
        "unexpected_percent",
        "missing_count",
        "observed_value",
    }
    assert len(doc["results"]) == v.expectations
    for r in doc["results"]:
        assert set(r) <= allowed
        for key in set(r) - {"expectation_type", "column", "rule", "where"}:
            assert r[key] is None or isinstance(r[key], bool | int | float)
    dates = next(r for r in doc["results"] if r["rule"] == "date_format")
    assert (dates["element_count"], dates["unexpected_count"], dates["success"]) == (7, 1, False)
    text = json.dumps(doc)
    for banned in ("unexpected_list", "unexpected_index_list", "partial_unexpected", "details"):
        assert banned not in text


def test_a_quarantined_share_above_the_threshold_fails_the_extract(tmp_path: Path) -> None:
    e, v = run(tmp_path, MIXED, threshold=0.5)
    # (2 + 4) of 9 records: 11 lines less one blank line and one exact duplicate
    assert v.quarantine_rate == pytest.approx(6 / 9)
    assert not v.success
    assert v.problems == (
        "66.6667% of delivered records were quarantined, above the contract's "
        "quarantineThreshold of 50.0000%",
    )
    assert v.rule_problems == ()  # the share is the publishing gate's to judge (linkage.gates)
    _, ok = run(tmp_path / "again", MIXED, threshold=0.7)
    assert ok.success and ok.problems == ()


def test_a12_a_header_only_extract_fails_the_row_count_rule(tmp_path: Path) -> None:
    e, v = run(tmp_path, f"{HEADER}\n")
    assert (v.checked, v.accepted, v.quarantined) == (0, 0, 0)
    assert not v.success
    assert v.problems == v.rule_problems == ("row_count:_table does not hold",)


def test_validating_the_same_extract_twice_is_refused_not_double_counted(tmp_path: Path) -> None:
    contract = make_contract(tmp_path)
    extracted = extract(tmp_path, MIXED, contract)
    validate_extract(extracted, contract, tmp_path / "results")
    before = extracted.accepted_path.read_bytes(), extracted.quarantine_path.read_bytes()
    with pytest.raises(ExtractChanged, match="validated already"):
        validate_extract(extracted, contract, tmp_path / "results")
    assert (extracted.accepted_path.read_bytes(), extracted.quarantine_path.read_bytes()) == before


def test_a_clean_extract_is_left_untouched(tmp_path: Path) -> None:
    contract = make_contract(tmp_path)
    extracted = extract(tmp_path, FIXTURES["all_good"][0], contract)
    files = (extracted.accepted_path, extracted.quarantine_path)
    stamps = [p.stat().st_mtime_ns for p in files]
    v = validate_extract(extracted, contract, tmp_path / "results")
    assert (v.checked, v.accepted, v.quarantined, v.success) == (2, 2, 0, True)
    assert [p.stat().st_mtime_ns for p in files] == stamps


def test_validation_makes_no_network_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("validation tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    e, v = run(tmp_path, MIXED)
    assert books_balance(e, v)


def test_an_errored_expectation_raises_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GX reports an errored expectation as a failure with the cause hidden in exception_info."""
    import linkage.validate as validate

    contract = make_contract(tmp_path)
    extracted = extract(tmp_path, MIXED, contract)
    before = (extracted.accepted_path.read_bytes(), extracted.quarantine_path.read_bytes())
    real = validate._column_frame

    def renamed(table: pa.Table, column: str | None, index: Any) -> Any:
        frame = real(table, column, index)
        return frame.rename(columns={"date_of_birth": "dob"})  # GX cannot find its column

    monkeypatch.setattr(validate, "_column_frame", renamed)
    with pytest.raises(ExpectationErrored) as info:
        validate_extract(extracted, contract, tmp_path / "results")
    message = str(info.value)
    assert "expect_column_values_to_be_dates_in_format on 'date_of_birth'" in message
    assert "MetricResolutionError" in message
    assert info.value.causes and "does not exist" in info.value.causes[0][3]
    assert (extracted.accepted_path.read_bytes(), extracted.quarantine_path.read_bytes()) == before
    assert not (tmp_path / "results" / "people.validation.json").exists()


# --- property: every delivered line ends in exactly one place -------------------------------------

IDS = ["0001", "0002", "0003", "0042", "12a4", ""]
NAMES = ["Ann", "Bob", "Zoë", "", "Bartholomew-Jo", "O'Neil"]
DOBS = ["2001-02-03", "1999-12-31", "03/02/2001", "2021-02-30", ""]
SEXES = ["M", "F", "U", "X", ""]

good_row = st.tuples(*(st.sampled_from(p) for p in (IDS, NAMES, DOBS, SEXES))).map(list)
ragged_row = st.lists(st.sampled_from(["1", "x", "0001"]), min_size=1, max_size=7).filter(
    lambda r: len(r) != 4
)
line = st.one_of(
    good_row.map(lambda r: ("row", r)),
    ragged_row.map(lambda r: ("ragged", r)),
    st.just(("blank", [])),
)


def _expected_reasons(row: list[str], id_counts: dict[str, int]) -> list[str]:
    """An independent oracle: the contract's rules applied in plain Python."""
    rid, name, dob, sex = row
    reasons = []
    if rid == "":
        reasons.append("required:record_id")
    if rid and id_counts[rid] > 1:
        reasons.append("unique:record_id")
    if rid and not (len(rid) == 4 and rid.isdigit()):
        reasons.append("pattern:record_id")
    if name and len(name) > 12:
        reasons.append("max_length:given_name")
    if dob:
        try:
            datetime.strptime(dob, "%Y-%m-%d")
        except ValueError:
            reasons.append("date_format:date_of_birth")
    if sex and sex not in {"M", "F", "U"}:
        reasons.append("allowed_values:sex")
    return reasons


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=st.lists(line, max_size=25))
def test_every_delivered_line_ends_in_exactly_one_place(
    tmp_path_factory: pytest.TempPathFactory, lines: list[tuple[str, list[str]]]
) -> None:
    tmp_path = tmp_path_factory.mktemp("prop")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    buf.write(HEADER + "\n")
    for _, fields in lines:
        if fields:
            writer.writerow(fields)
        else:
            buf.write("\n")
    e, v = run(tmp_path, buf.getvalue())

    # the oracle: where each physical line (header is line 1) must end
    blank, ragged, duplicates, survivors = set(), set(), set(), {}
    seen: set[tuple[str, ...]] = set()
    for number, (kind, fields) in enumerate(lines, start=2):
        if kind == "blank":
            blank.add(number)
        elif kind == "ragged":
            ragged.add(number)
        elif tuple(fields) in seen:
            duplicates.add(number)
        else:
            seen.add(tuple(fields))
            survivors[number] = fields
    id_counts: dict[str, int] = {}
    for fields in survivors.values():
        id_counts[fields[0]] = id_counts.get(fields[0], 0) + 1
    expected = {n: _expected_reasons(f, id_counts) for n, f in survivors.items()}
    failing = {n: ";".join(r) for n, r in expected.items() if r}

    # the books balance
    assert books_balance(e, v)
    assert (e.blank_lines, e.duplicates, e.quarantined) == (
        len(blank),
        len(duplicates),
        len(ragged),
    )
    assert v.quarantined == len(failing)

    # every non-blank line is in exactly one place: accepted, quarantined or a dropped repeat
    acc = accepted_lines(v)
    quar = pq.read_table(v.quarantine_path).column("_line").to_pylist()
    assert len(acc) == len(set(acc)) and len(quar) == len(set(quar))
    assert set(acc).isdisjoint(quar) and duplicates.isdisjoint(set(acc) | set(quar))
    non_blank = set(range(2, len(lines) + 2)) - blank
    assert set(acc) | set(quar) | duplicates == non_blank

    # ... and exactly the one the oracle says, for the reasons it says
    reasons = quarantine(v)
    assert {n: r for n, r in reasons.items() if n not in ragged} == failing
    assert set(acc) == set(survivors) - set(failing)
    counts: dict[str, int] = {}
    for r in failing.values():
        for reason in r.split(";"):
            counts[reason] = counts.get(reason, 0) + 1
    assert v.reasons == counts
