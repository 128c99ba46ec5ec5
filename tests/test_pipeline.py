"""The library's steps end to end, without Prefect: books, releases, analyst SQL, onboarding."""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import replace
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from linkage import pipeline
from linkage.config import ProjectConfig, load_config
from linkage.contracts import load_contract
from linkage.db import connect
from linkage.demo.project import write_example_project
from linkage.errors import PublishError
from linkage.evaluate import evaluate
from linkage.publish import current_release, publish
from linkage.runlog import RunRecord
from tests.conftest import make_demo_project


def run_steps(config: ProjectConfig, override: str | None = None, full: bool = False) -> RunRecord:
    """The nightly flow's steps in order, as plain calls (flows/nightly.py is the real thing)."""
    run = pipeline.new_run(config, full)
    intakes = []
    for agency in config.agencies:
        extracted = pipeline.extract(config, agency.name, run)
        if isinstance(extracted, str):
            intakes.append(pipeline.rejected_intake(agency.name, extracted))
            continue
        validated = pipeline.validate(config, extracted, run)
        intakes.append(pipeline.standardise(config, extracted, validated, run))
    gates = pipeline.check(config, intakes)
    failed = [g for g in gates if not g.passed]
    if failed and not override:
        pipeline.block(config, pipeline.record(config, run, intakes, gates, status="blocked"))
    if failed:
        intakes = [
            pipeline.carry_forward(config, i, run) if i.standardised is None else i for i in intakes
        ]
    paths = [i.standardised for i in intakes if i.standardised is not None]
    model, trained = pipeline.model_for_run(config, paths, run)
    linked = pipeline.link(config, model, paths, run)
    record = pipeline.record(
        config, run, intakes, gates, status="published",
        override=override if failed else None, model=model, trained=trained, linked=linked,
    )  # fmt: skip
    return pipeline.publish_run(config, record, linked)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunRecord]:
    path = make_demo_project(tmp_path_factory.mktemp("pipeline"), persons=1_200, seed=3)
    return path, run_steps(load_config(path))


def test_every_accepted_row_is_published_once(project: tuple[Path, RunRecord]) -> None:
    path, summary = project
    release = current_release(load_config(path).paths.index_dir)
    assert release is not None
    with duckdb.connect(str(release), read_only=True) as con:
        books = con.sql(
            "SELECT agency, delivered, accepted, quarantined, blank_lines, duplicates, "
            "standardised "
            "FROM extracts"
        ).fetchall()
        for _, delivered, accepted, quarantined, blank, dupes, standardised in books:
            assert delivered == accepted + quarantined + blank + dupes
            assert accepted == standardised
        per_agency = dict(con.sql("SELECT agency, count(*) FROM records GROUP BY ALL").fetchall())
        assert per_agency == {b[0]: b[6] for b in books}
        (dupe_keys,) = con.sql(
            "SELECT count(*) - count(DISTINCT record_key) FROM records"
        ).fetchall()[0]
        assert dupe_keys == 0
        (persons,) = con.sql("SELECT count(DISTINCT person_id) FROM records").fetchall()[0]
        assert persons == summary.persons
    with open(path.parent / "data" / "truth.csv") as f:
        assert sum(1 for _ in csv.DictReader(f)) == summary.records


def test_run_record_holds_counts_only(project: tuple[Path, RunRecord]) -> None:
    path, record = project
    saved = (load_config(path).paths.index_dir / "runs" / f"{record.run_id}.json").read_text()
    assert RunRecord.from_json(saved) == record
    names = pl.read_csv(path.parent / "data" / "nhs_trust.csv", infer_schema=False)
    for surname in names["surname"].drop_nulls().unique().head(50):
        assert f'"{surname}"' not in saved
    out = pipeline.format_summary(record)
    assert "nhs_trust" in out and "sql" in out and str(record.persons) in out


def test_release_is_read_only_and_current_points_to_it(
    project: tuple[Path, RunRecord],
) -> None:
    path, summary = project
    index = load_config(path).paths.index_dir
    link = index / "current.duckdb"
    assert link.is_symlink() and os.readlink(link) == f"releases/{summary.run_id}.duckdb"
    assert os.stat(link).st_mode & 0o777 == 0o444
    assert not list((index / "releases").glob(".*partial*"))


def test_unbalanced_books_publish_nothing(project: tuple[Path, RunRecord], tmp_path: Path) -> None:
    path, summary = project
    config = load_config(path)
    before = current_release(config.paths.index_dir)
    work_db = Path(config.paths.work_dir) / summary.run_id / "work.duckdb"
    con = connect(work_db, config)
    try:
        extracts = summary.extracts
        lost_one = replace(extracts[0], delivered=extracts[0].delivered + 1)
        record = replace(summary, run_id="unbalanced", extracts=(lost_one, *extracts[1:]))
        with pytest.raises(PublishError, match="books do not balance"):
            publish(con, config.paths.index_dir, record, [])
    finally:
        con.close()
    assert current_release(config.paths.index_dir) == before
    assert not (config.paths.index_dir / "releases" / "unbalanced.duckdb").exists()


def test_a_reader_keeps_its_release_while_a_new_one_is_published(tmp_path: Path) -> None:
    path = make_demo_project(tmp_path, persons=300, seed=5)
    config = load_config(path)
    first = run_steps(config)
    old = current_release(config.paths.index_dir)
    reader = duckdb.connect(str(old), read_only=True)
    try:
        second = run_steps(config)
        assert reader.sql("SELECT max(run_id) FROM runs").fetchall()[0][0] == first.run_id
        new = current_release(config.paths.index_dir)
        assert new != old
        with duckdb.connect(str(new), read_only=True) as con:
            assert con.sql("SELECT max(run_id) FROM runs").fetchall()[0][0] == second.run_id
    finally:
        reader.close()


# --- analyst SQL ----------------------------------------------------------------------------------

runner = CliRunner()


def sql(path: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["sql", "--config", str(path), *args])
    return result.exit_code, result.output + (str(result.exception) if result.exception else "")


def test_sql_prints_table_csv_and_json(project: tuple[Path, RunRecord]) -> None:
    path, summary = project
    q = "SELECT count(*) AS n FROM persons"
    code, out = sql(path, q)
    assert code == 0 and out.split("\n")[0].strip() == "n" and str(summary.persons) in out
    code, out = sql(path, q, "--format", "csv")
    assert code == 0 and out.splitlines() == ["n", str(summary.persons)]
    code, out = sql(path, q, "-f", "json")
    assert code == 0 and json.loads(out) == [{"n": summary.persons}]
    code, out = sql(path, "SELECT person_id FROM persons", "--limit", "3", "-f", "csv")
    assert code == 0 and len(out.splitlines()) == 4


@pytest.mark.parametrize(
    "query",
    [
        "CREATE TABLE x AS SELECT 1",
        "DELETE FROM persons",
        "SELECT * FROM read_text('/etc/passwd')",
        "COPY persons TO '/tmp/linkage-leak.csv'",
        "SET enable_external_access = true",
    ],
)
def test_sql_cannot_write_or_reach_files(project: tuple[Path, RunRecord], query: str) -> None:
    code, out = sql(project[0], query)
    assert code != 0
    assert not Path("/tmp/linkage-leak.csv").exists()


# --- onboarding -----------------------------------------------------------------------------------

HOUSING_CONTRACT = """
apiVersion: v3.1.0
kind: DataContract
id: urn:datacontract:test:housing
name: Housing tenants extract
version: 1.0.0
status: active
schema:
  - name: housing_tenants
    properties:
      - {name: tenant_ref, logicalType: string, required: true, unique: true}
      - {name: tenant_forename, logicalType: string}
      - {name: tenant_surname, logicalType: string}
      - {name: birth_mmddyyyy, logicalType: string}
      - {name: gender_code, logicalType: string}
      - {name: flat_no, logicalType: string}
      - {name: house_no, logicalType: string}
      - {name: street_name, logicalType: string}
      - {name: post_code, logicalType: string}
      - {name: nhs, logicalType: string}
"""

HOUSING_AGENCY = {
    "name": "housing",
    "contract": "housing.yaml",
    "source": {"kind": "csv", "path": "housing.csv", "delimiter": "|"},
    "mapping": {
        "source_record_id": "tenant_ref",
        "given_name": "tenant_forename",
        "family_name": "tenant_surname",
        "date_of_birth": {"column": "birth_mmddyyyy", "format": "%m%d%Y"},
        "sex": {"column": "gender_code", "codes": {"1": "M", "2": "F", "0": None}},
        "address": {"columns": ["flat_no", "house_no", "street_name"], "separator": " "},
        "postcode": "post_code",
        "identifiers": {"nhs_number": "nhs"},
    },
}


def test_a_new_agency_is_onboarded_with_config_and_a_contract_only(tmp_path: Path) -> None:
    """A housing extract with other column names, a split address, MMDDYYYY dates, 1/2 sex codes
    and a pipe delimiter: its tenants are social-care clients, and must link to them."""
    path = make_demo_project(tmp_path, persons=1_000, seed=9)
    care = pl.read_csv(tmp_path / "data" / "social_care.csv", infer_schema=False).head(120)
    dob = care["dob"].str.strptime(pl.Date, "%d/%m/%Y", strict=False)
    housing = care.select(
        tenant_ref=pl.lit("H") + pl.col("case_ref").str.slice(2),
        tenant_forename=pl.col("first_name"),
        tenant_surname=pl.col("last_name"),
        birth_mmddyyyy=dob.dt.strftime("%m%d%Y"),
        gender_code=pl.col("sex").replace_strict({"M": "1", "F": "2"}, default="0"),
        flat_no=pl.col("flat"),
        house_no=pl.col("house_number"),
        street_name=pl.col("street"),
        post_code=pl.col("post_code").str.to_lowercase(),
        nhs=pl.col("nhs_no"),
    )
    housing.write_csv(tmp_path / "housing.csv", separator="|")
    (tmp_path / "housing.yaml").write_text(HOUSING_CONTRACT)
    doc = yaml.safe_load(path.read_text())
    doc["agencies"].append(HOUSING_AGENCY)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))

    config = load_config(path)
    summary = run_steps(config)
    housing_books = next(e for e in summary.extracts if e.agency == "housing")
    assert housing_books.accepted == 120 and housing_books.quarantined == 0

    release = current_release(config.paths.index_dir)
    assert release is not None
    with duckdb.connect(str(release), read_only=True) as con:
        same_values = con.sql("""
            SELECT count(*) FROM records h JOIN records c
              ON h.agency = 'housing' AND c.agency = 'social_care'
             AND c.source_record_id = 'SC' || substr(h.source_record_id, 2)
            WHERE h.given_name IS NOT DISTINCT FROM c.given_name
              AND h.family_name IS NOT DISTINCT FROM c.family_name
              AND h.date_of_birth IS NOT DISTINCT FROM c.date_of_birth
              AND h.sex IS NOT DISTINCT FROM c.sex
              AND h.postcode IS NOT DISTINCT FROM c.postcode
              AND h.id_nhs_number IS NOT DISTINCT FROM c.id_nhs_number
        """).fetchall()[0][0]
        same_person = con.sql("""
            SELECT count(*) FROM crosswalk h JOIN crosswalk c
              ON c.agency = 'social_care' AND h.agency = 'housing'
             AND c.source_record_id = 'SC' || substr(h.source_record_id, 2)
             AND c.person_id = h.person_id
        """).fetchall()[0][0]
    assert same_values == 120  # the mapping gives the very same canonical record
    assert same_person >= 114  # >= 95% of tenants linked to the care record they came from
    truth = evaluate(release, tmp_path / "data" / "truth.csv")
    assert truth.published_records_not_in_truth == 120  # the new agency is not in the demo truth


def test_release_tables_match_the_published_index_contract(project: tuple[Path, RunRecord]) -> None:
    """data_contracts/master_index.yaml is the published index's contract: its tables and
    columns, in order, are exactly what a release holds."""
    path, record = project
    contract_path = Path(__file__).resolve().parents[1] / "data_contracts" / "master_index.yaml"
    load_contract(contract_path)  # valid ODCS
    doc = yaml.safe_load(contract_path.read_text())
    with duckdb.connect(record.release, read_only=True) as con:
        tables = {
            r[0] for r in con.sql("SELECT table_name FROM information_schema.tables").fetchall()
        }
        assert tables == {t["physicalName"] for t in doc["schema"]}
        for table in doc["schema"]:
            columns = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ? ORDER BY ordinal_position", [table["physicalName"]]
            ).fetchall()  # fmt: skip
            declared = [(p["name"], p["physicalType"]) for p in table["properties"]]
            assert columns[: len(declared)] == declared, table["name"]
            extra = {c["property"]: c["value"] for c in table.get("customProperties", [])}
            pattern = extra.get("additionalColumnsPattern", "^$")
            rest = [c for c, _ in columns[len(declared) :]]
            assert all(re.match(pattern, c) for c in rest), (table["name"], rest)


@pytest.mark.slow
@pytest.mark.parametrize(("benchmark", "min_f1"), [("febrl4", 0.999), ("febrl3", 0.99)])
def test_febrl_through_the_whole_pipeline(tmp_path: Path, benchmark: str, min_f1: float) -> None:
    """The FEBRL benchmarks (regression gates, not tuning sets) via examples/febrl4 (linking two
    files) and examples/febrl3 (deduplicating one)."""
    example = Path(__file__).resolve().parents[1] / "examples" / benchmark
    path = write_example_project(example, tmp_path)
    record = run_steps(load_config(path))
    ev = evaluate(Path(record.release), example / "truth.csv")
    assert ev.truth_records_not_published == 0
    assert ev.pairwise_precision >= min_f1 and ev.pairwise_f1 >= min_f1, ev


def test_persons_hold_the_best_known_values_by_the_survivorship_rule(
    project: tuple[Path, RunRecord],
) -> None:
    """Each attribute: the value most of the person's records hold (NULLs ignored); a tie goes
    to the value from the alphabetically first agency, then to the smallest value."""
    from collections import Counter, defaultdict

    _, record = project
    with duckdb.connect(record.release, read_only=True) as con:
        rows = con.sql(
            "SELECT person_id, agency, given_name, family_name, date_of_birth, sex, postcode "
            "FROM records"
        ).fetchall()
        persons = {
            r[0]: r[1:]
            for r in con.sql(
                "SELECT person_id, given_name, family_name, date_of_birth, sex, postcode "
                "FROM persons"
            ).fetchall()
        }
    by_person: dict[str, list[tuple]] = defaultdict(list)
    for person, agency, *values in rows:
        by_person[person].append((agency, values))
    for person, recs in by_person.items():
        for i in range(5):
            held = [(agency, v[i]) for agency, v in recs if v[i] is not None]
            counts = Counter(v for _, v in held)
            first_agency = {v: min(a for a, w in held if w == v) for v in counts}
            best = min(counts, key=lambda v: (-counts[v], first_agency[v], v)) if held else None
            assert persons[person][i] == best, (person, i)
