"""The pseudonymised analyst release: no direct identifier anywhere, keyed pseudonyms."""

from __future__ import annotations

import hmac
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.analyst import analyst_current, create_key, define_pseudonym, write_analyst_release
from linkage.config import AnalystRelease, load_config
from linkage.errors import KeyFileError
from linkage.publish import RELEASES, current_release
from tests.conftest import make_demo_project
from tests.test_pipeline import run_steps

#: Columns of the identifiable release that identify a person directly or are its keys.
IDENTIFYING = {
    "person_id", "record_key", "source_record_id", "given_name", "middle_names", "family_name",
    "date_of_birth", "address", "postcode", "person_id_l", "person_id_r", "record_key_l",
    "record_key_r", "related_person_id",
}  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=16, max_size=100), value=st.text(min_size=0, max_size=40))
def test_the_sql_pseudonym_is_hmac_sha256(key: bytes, value: str) -> None:
    """The vectorised SQL macro is RFC 2104 HMAC-SHA256 (keys longer than a block included)."""
    con = duckdb.connect()
    define_pseudonym(con, key)
    got, none = con.execute("SELECT pseudonym('A', ?), pseudonym('A', NULL)", [value]).fetchone()
    assert got == "A" + hmac.digest(key, value.encode(), "sha256").hex()[:20]
    assert none is None


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_demo_project(tmp_path_factory.mktemp("analyst"), persons=400, seed=6)
    run_steps(load_config(path))
    return path


def _strings(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Every text value in every table of ``con``."""
    out: set[str] = set()
    tables = [r[0] for r in con.sql("SELECT table_name FROM duckdb_tables()").fetchall()]
    for t in tables:
        for (col, typ) in con.sql(f"SELECT column_name, data_type FROM duckdb_columns() "
                                  f"WHERE table_name = '{t}'").fetchall():  # fmt: skip
            if typ == "VARCHAR":
                out |= {v for (v,) in con.sql(f'SELECT DISTINCT "{col}" FROM {t}').fetchall()}
            elif typ == "VARCHAR[]":
                out |= {
                    v for (v,) in con.sql(f'SELECT DISTINCT unnest("{col}") FROM {t}').fetchall()
                }
    return out - {None}


def test_the_analyst_release_holds_no_direct_identifier(published: Path) -> None:
    config = load_config(published)
    index = config.paths.index_dir
    analyst, full = analyst_current(index), current_release(index)
    assert analyst is not None and full is not None and analyst.name == full.name
    assert os.stat(analyst).st_mode & 0o777 == 0o444
    with duckdb.connect(str(full), read_only=True) as src:
        identifying: set[str] = set()
        for col in ("person_id", "record_key", "source_record_id", "given_name", "middle_names",
                    "family_name", "address", "postcode", "id_nhs_number", "id_ni_number",
                    "id_pnc_id"):  # fmt: skip
            identifying |= {v for (v,) in src.sql(f"SELECT DISTINCT {col} FROM records").fetchall()}
        identifying |= {
            str(v) for (v,) in src.sql("SELECT DISTINCT date_of_birth FROM records").fetchall()
        }
    identifying -= {None}
    with duckdb.connect(str(analyst), read_only=True) as con:
        columns = {r[0] for r in con.sql("SELECT column_name FROM duckdb_columns()").fetchall()}
        assert not columns & IDENTIFYING
        assert not [c for c in columns if c.startswith("id_")]
        values = _strings(con)
        assert not values & identifying
        persons = con.sql("SELECT count(*), count(DISTINCT person) FROM persons").fetchall()[0]
        columns_of_persons = [r[0] for r in con.sql("DESCRIBE persons").fetchall()]
    assert persons[0] == persons[1] > 0
    assert columns_of_persons == [
        "person", "record_count", "agency_count", "agencies", "birth_year", "sex",
        "postcode_district",
    ]  # fmt: skip


def test_pseudonyms_are_stable_per_key_and_do_not_join_across_keys(
    published: Path, tmp_path: Path
) -> None:
    config = load_config(published)
    release = current_release(config.paths.index_dir)
    assert release is not None and config.analyst_release is not None

    def persons(index: Path, key: Path, attributes: tuple[str, ...] = ("sex",)) -> set[str]:
        settings = AnalystRelease(key_file=key, attributes=attributes)  # type: ignore[arg-type]
        out = write_analyst_release(release, index, settings)
        with duckdb.connect(str(out), read_only=True) as con:
            assert [r[0] for r in con.sql("DESCRIBE persons").fetchall()][-1] == attributes[-1]
            return {p for (p,) in con.sql("SELECT person FROM persons").fetchall()}

    other_key = tmp_path / "other.key"
    create_key(other_key)
    mine = persons(tmp_path / "a", config.analyst_release.key_file)
    again = persons(tmp_path / "b", config.analyst_release.key_file)
    theirs = persons(tmp_path / "c", other_key)
    assert mine == again
    assert not mine & theirs


def test_a_missing_or_exposed_key_is_refused_with_the_fix(tmp_path: Path) -> None:
    from linkage.analyst import load_key

    with pytest.raises(KeyFileError, match="linkage keygen --out"):
        load_key(AnalystRelease(key_file=tmp_path / "none.key"))
    linkage = Path(sys.executable).with_name("linkage")
    done = subprocess.run(
        [str(linkage), "keygen", "--out", str(tmp_path / "k.key")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert os.stat(tmp_path / "k.key").st_mode & 0o777 == 0o600
    os.chmod(tmp_path / "k.key", 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(AnalystRelease(key_file=tmp_path / "k.key"))
    again = subprocess.run(
        [str(linkage), "keygen", "--out", str(tmp_path / "k.key")], capture_output=True, text=True
    )
    assert again.returncode != 0 and "never overwritten" in again.stderr


def test_a_project_without_the_key_publishes_nothing(tmp_path: Path) -> None:
    path = make_demo_project(tmp_path, persons=200, seed=2)
    doc = yaml.safe_load(path.read_text())
    doc["analyst_release"]["create_key_if_missing"] = False
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    config = load_config(path)
    with pytest.raises(KeyFileError):
        run_steps(config)
    assert current_release(config.paths.index_dir) is None


@pytest.mark.parametrize("change", ["none", "key", "attributes", "comparisons"])
def test_the_current_analyst_release_is_reused_only_when_made_the_same_way(
    published: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    """The next analyst release is written as changes to the current one only when that one
    was made with the same key, the same person attributes and links of the same comparisons;
    otherwise whole (changes written into a table of other columns would fail or mislead)."""
    config = load_config(published)
    release = current_release(config.paths.index_dir)
    assert release is not None and config.analyst_release is not None
    index = tmp_path / "index"
    (index / RELEASES).mkdir(parents=True)
    base, new = index / RELEASES / "base.duckdb", index / RELEASES / "new.duckdb"
    shutil.copy(release, base)
    shutil.copy(release, new)
    new.chmod(0o600)
    if change == "comparisons":
        with duckdb.connect(str(new)) as con:
            con.execute("ALTER TABLE links ADD COLUMN gamma_extra INTEGER")
    made = config.analyst_release
    write_analyst_release(base, index, made)
    if change == "key":
        create_key(tmp_path / "other.key")
        made = AnalystRelease(key_file=tmp_path / "other.key", attributes=made.attributes)
    elif change == "attributes":
        made = AnalystRelease(key_file=made.key_file, attributes=("sex",))  # type: ignore[arg-type]
    with caplog.at_level("INFO", "linkage.analyst"):
        out = write_analyst_release(new, index, made)
    assert ("as the changes since base.duckdb" in caplog.text) == (change == "none")
    with duckdb.connect(str(out), read_only=True) as con:
        (persons,) = con.sql("SELECT count(*) FROM persons").fetchall()[0]
    assert persons > 0
