"""Incremental runs: scoring only what changed gives what a full run gives, IDs included."""

from __future__ import annotations

import csv
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from linkage import runlog
from linkage.analyst import write_analyst_release
from linkage.config import load_config
from linkage.errors import BlockingBudgetError
from linkage.publish import RELEASES, publish, switch_current
from linkage.runlog import RunRecord
from tests.conftest import make_demo_project
from tests.test_pipeline import run_steps


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])


def _index(record: RunRecord) -> tuple[dict[str, str], set[tuple]]:
    assert record.release is not None
    with duckdb.connect(record.release, read_only=True) as con:
        ids = dict(con.sql("SELECT record_key, person_id FROM records").fetchall())
        links = set(
            con.sql(
                "SELECT record_key_l, record_key_r, round(match_weight, 6), linked, grade, veto "
                "FROM links"
            ).fetchall()
        )
    return ids, links


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunRecord, RunRecord, int]:
    """Two copies of one project, published once alike; then the same night's changes (1% held
    back arrive, some records deleted, some corrected) run incrementally on one, fully on the
    other."""
    root = tmp_path_factory.mktemp("incremental")
    paths = [make_demo_project(root / name, persons=800, seed=13) for name in ("inc", "full")]
    nhs = [p.parent / "data" / "nhs_trust.csv" for p in paths]
    header, rows = _rows(nhs[0])
    held_back = rows[::100]  # arrive tomorrow
    today = [r for i, r in enumerate(rows) if i % 100]
    for f in nhs:
        _write(f, header, today)
    first = run_steps(load_config(paths[0]))
    # the other copy uses the very same trained model (training is not what is compared)
    shutil.copytree(load_config(paths[0]).model.dir, load_config(paths[1]).model.dir)
    run_steps(load_config(paths[1]))

    surname, forename = header.index("surname"), header.index("forename")
    tomorrow = [list(r) for r in today[7:]] + held_back  # 7 records deleted (erasure, opt-out)
    for r in tomorrow[:: len(tomorrow) // 6]:
        r[surname] = r[surname] + "E"  # corrected or mistyped surnames
    clash = list(tomorrow[3])  # a new row reusing an unchanged row's patient_id: both quarantined
    clash[forename] = "Someone"
    # and breaks two row rules, checked on new rows only (quarantined as in a full run)
    clash[header.index("date_of_birth")], clash[header.index("postcode")] = "04/07/1958", "N0T"
    tomorrow.append(clash)
    for f in nhs:
        _write(f, header, tomorrow)
    seen, logger = _Messages(), logging.getLogger("linkage.cluster")
    level = logger.level
    logger.addHandler(seen)
    logger.setLevel(logging.INFO)
    try:
        incremental = run_steps(load_config(paths[0]))
    finally:
        logger.removeHandler(seen)
        logger.setLevel(level)
    full = run_steps(load_config(paths[1]), full=True)
    assert first.link_mode == "full"
    # only the persons the changes touch were clustered again
    (affected,) = [int(m.split()[1]) for m in seen.messages if m.startswith("re-clustering")]
    assert 0 < affected < 0.2 * incremental.records  # type: ignore[operator]
    return incremental, full, len(held_back)


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_an_incremental_run_scores_only_what_changed(
    twins: tuple[RunRecord, RunRecord, int],
) -> None:
    incremental, full, arrived = twins
    assert incremental.link_mode == "incremental" and full.link_mode == "full"
    assert incremental.changes["new"] == arrived
    assert incremental.changes["deleted"] == 8  # 7 deleted, 1 now quarantined by the clash
    assert 5 <= incremental.changes["changed"] <= 9
    assert incremental.changes["unchanged"] > 0.9 * incremental.records  # type: ignore[operator]
    assert incremental.matching == full.matching


def test_incremental_and_full_runs_give_the_same_persons_ids_and_links(
    twins: tuple[RunRecord, RunRecord, int],
) -> None:
    incremental, full, _ = twins
    ids_inc, links_inc = _index(incremental)
    ids_full, links_full = _index(full)
    assert ids_inc == ids_full  # the same persons, with the same IDs
    assert links_inc == links_full  # the same scored pairs, scores and decisions
    assert (incremental.persons, incremental.links) == (full.persons, full.links)


def test_unchanged_rows_keep_their_records_and_the_books_still_balance(
    twins: tuple[RunRecord, RunRecord, int],
) -> None:
    """Rows delivered as before are not standardised again, yet the records and books are the
    ones a full intake gives; a new row clashing with an unchanged one quarantines both."""
    incremental, full, _ = twins
    for inc, ful in zip(incremental.extracts, full.extracts, strict=True):
        assert ful.reused == 0 and inc.reused > 0.9 * inc.standardised, inc.agency
        assert inc.intake == ful.intake is not None
        assert replace(inc, reused=0, source=ful.source) == ful  # books, flags, completeness...
    nhs = next(e for e in incremental.extracts if e.agency == "nhs_trust")
    assert nhs.quarantine_reasons.get("unique:patient_id") == 2
    assert nhs.quarantine_reasons.get("pattern:date_of_birth") == 1
    assert nhs.quarantine_reasons.get("pattern:postcode") == 1
    tables = []
    for run in (incremental, full):
        assert run.release is not None
        with duckdb.connect(run.release, read_only=True) as con:
            tables.append(con.sql("SELECT * FROM records ORDER BY record_key").fetchall())
    assert tables[0] == tables[1]


def test_deleted_records_leave_the_index(twins: tuple[RunRecord, RunRecord, int]) -> None:
    incremental, _, _ = twins
    assert incremental.release is not None
    with duckdb.connect(incremental.release, read_only=True) as con:
        retired = con.execute(
            "SELECT count(*) FROM lineage WHERE run_id = ? AND event = 'retired'",
            [incremental.run_id],
        ).fetchall()[0][0]
        (records,) = con.sql("SELECT count(*) FROM records").fetchall()[0]
    assert records == incremental.records
    assert retired >= 1  # persons left with no record are retired in the lineage


# What re-clustering can also do to records that did not change: move some to another person
# (a merge; the cluster keeps its smallest record key as its id) and change decisions on pairs.
_MOVES = """
    CREATE TEMP TABLE unchanged AS
    SELECT record_key FROM records ANTI JOIN changed_records USING (record_key);
    UPDATE clusters SET cluster_id = (SELECT min(record_key) FROM records)
    WHERE record_key IN (SELECT record_key FROM unchanged ORDER BY hash(record_key) LIMIT 5);
    UPDATE pairs SET linked = NOT linked, grade = 'probable'
    WHERE record_key_l || '|' || record_key_r IN (
        SELECT record_key_l || '|' || record_key_r FROM pairs
        WHERE record_key_l IN (FROM unchanged) AND record_key_r IN (FROM unchanged)
        ORDER BY hash(record_key_l) LIMIT 5);
"""


def _assert_same_tables(a: Path, b: Path, tables: tuple[str, ...]) -> None:
    """Two release files hold the same rows (as multisets) in ``tables``, lineage, runs and
    extracts."""
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
        for table in (*tables, "lineage", "runs", "extracts"):
            counts = con.sql(f"""
                SELECT (SELECT count(*) FROM a.{table}), (SELECT count(*) FROM b.{table}),
                       (SELECT count(*) FROM (FROM a.{table} EXCEPT ALL FROM b.{table})),
                       (SELECT count(*) FROM (FROM b.{table} EXCEPT ALL FROM a.{table}))
            """).fetchall()[0]
            assert counts[0] == counts[1] > 0 and counts[2:] == (0, 0), (table, counts)


def test_an_incremental_release_is_the_previous_one_with_the_changes_written_in(
    twins: tuple[RunRecord, RunRecord, int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The incremental run's work tables, published as changes to a copy of the release they
    were linked against and as a whole new release, give the same tables, row for row."""
    incremental, _, _ = twins
    config = load_config(Path(incremental.config_path))
    runs = runlog.history(config.paths.index_dir)
    history = [r for r in runs if r.run_id != incremental.run_id]
    assert history[-1].release is not None
    base = Path(history[-1].release)
    released = {}
    for update in (True, False):
        index = tmp_path / f"index-{update}"
        (index / RELEASES).mkdir(parents=True)
        shutil.copy(base, index / RELEASES / base.name)
        switch_current(index, index / RELEASES / base.name)
        work = tmp_path / f"work-{update}.duckdb"
        shutil.copy(config.paths.work_dir / incremental.run_id / "work.duckdb", work)
        with duckdb.connect(str(work)) as con, caplog.at_level("INFO", "linkage.publish"):
            con.execute(_MOVES)
            based = index / RELEASES / base.name if update else None
            released[update] = publish(con, index, incremental, history, base=based).release_path
        written = [m for m in caplog.messages if "into a copy of it" in m]
        assert bool(written) == update
        if update:  # only what changed was written
            records = int(written[0].split()[1])
            assert 0 < records < 0.1 * incremental.records  # type: ignore[operator]
        caplog.clear()
    _assert_same_tables(
        released[True], released[False], ("records", "persons", "links", "crosswalk")
    )
    # The analyst release: written whole, and as the changes to the base release's one.
    settings = config.analyst_release
    assert settings is not None
    analyst = {}
    with caplog.at_level("INFO", "linkage.analyst"):
        write_analyst_release(base, tmp_path / "index-True", settings)
        for update in (True, False):
            analyst[update] = write_analyst_release(
                released[update], tmp_path / f"index-{update}", settings
            )
    changes = [m for m in caplog.messages if "as the changes since" in m]
    assert len(changes) == 1 and released[True].name in changes[0]
    _assert_same_tables(analyst[True], analyst[False], ("persons", "crosswalk", "links"))


def test_what_decides_the_links_is_in_the_matching_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change of model, term frequencies, common names, clustering rules, threshold or
    given-name variants makes the next run a full one (the fingerprint differs); the same
    inputs, the same print."""
    from linkage import incremental
    from linkage.cluster import ClusterPolicy
    from linkage.model import ModelArtefact

    (tmp_path / "splink_model.json").write_text('{"comparisons": []}')
    (tmp_path / "tf_given_name.parquet").write_bytes(b"one")
    model = ModelArtefact(tmp_path, "v1", ("given_name",), ())
    policy = ClusterPolicy(("id_nhs_number",), ("id_nhs_number",), 0.7, 0.99, 50)
    base = incremental.matching_fingerprint(model, policy, 0.3)
    assert incremental.matching_fingerprint(model, policy, 0.3) == base
    assert (
        incremental.matching_fingerprint(model, replace(policy, cluster_threshold=0.8), 0.3) != base
    )
    assert incremental.matching_fingerprint(model, policy, 0.2) != base
    pairs = incremental.nickname_pairs()
    monkeypatch.setattr(incremental, "nickname_pairs", lambda: (*pairs, ("MOL", "MARY")))
    assert incremental.matching_fingerprint(model, policy, 0.3) != base
    monkeypatch.undo()
    (tmp_path / "tf_given_name.parquet").write_bytes(b"two")
    assert incremental.matching_fingerprint(model, policy, 0.3) != base
    (tmp_path / "tf_given_name.parquet").write_bytes(b"one")
    assert incremental.matching_fingerprint(model, policy, 0.3) == base
    (tmp_path / "common_names.parquet").write_bytes(b"names")
    assert incremental.matching_fingerprint(model, policy, 0.3) != base
    (tmp_path / "common_names.parquet").unlink()
    assert incremental.matching_fingerprint(model, policy, 0.3) == base
    (tmp_path / "splink_model.json").write_text('{"comparisons": [1]}')
    assert incremental.matching_fingerprint(model, policy, 0.3) != base


def test_an_incremental_run_checks_the_blocking_budget_on_what_it_compares(
    tmp_path: Path,
) -> None:
    """The incremental run compares the changed records with the unchanged ones sharing a
    blocking key with one: a placeholder arriving in the changed records stops it, naming the
    rule and the value, as a full run would."""
    path = make_demo_project(tmp_path, persons=300, seed=21)
    run_steps(load_config(path))
    config = load_config(path)
    tight = config.model_copy(
        update={"model": config.model.model_copy(update={"max_pairs_per_rule": 5_000})}
    )
    assert run_steps(tight).link_mode == "incremental"  # nothing changed: within budget
    nhs = path.parent / "data" / "nhs_trust.csv"
    header, rows = _rows(nhs)
    line_1, line_2 = header.index("address_line_1"), header.index("address_line_2")
    for r in rows[:150]:  # one default address typed into 150 records: 11,175 pairs
        r[line_1], r[line_2] = "1 Main Street", "Anytown"
    _write(nhs, header, rows)
    with pytest.raises(BlockingBudgetError) as e:
        run_steps(tight)
    assert 'l."address" = r."address"' in str(e.value)
    assert "11,175 of them share \"address\" = '1 MAIN ST ANYTOWN'" in str(e.value)
