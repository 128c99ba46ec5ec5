"""Blocking: pair counts per rule are exact, a placeholder over budget stops, and blocking one
rule at a time (low memory) gives Splink's pairs and scores."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import duckdb
import pytest
import splink.comparison_library as cl
from hypothesis import given, settings
from hypothesis import strategies as st
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

import linkage.link as link
from linkage.blocking import block_pairs, check_blocking_budget, rule_pairs
from linkage.cluster import ClusterPolicy
from linkage.config import ProjectConfig, load_config
from linkage.errors import BlockingBudgetError
from linkage.link import load_records, predict_and_cluster
from linkage.model import (
    NAME_KEY,
    ModelArtefact,
    _em_blocks,
    _m_from_em_pairs,
    _rule_sql,
    match_prior,
    save_common_names,
)
from linkage.pipeline import cluster_policy, load_model
from tests.conftest import make_demo_project
from tests.test_pipeline import run_steps

RULES = [
    'l."family_name" = r."family_name"',
    '(l."family_name" = r."family_name") AND (l."date_of_birth" = r."date_of_birth")',
    "l.given_name = r.family_name AND l.family_name = r.given_name",
    # as block_on("date_of_birth", "substr(given_name, 1, 1)", "substr(family_name, 1, 1)") writes
    '(l."date_of_birth" = r."date_of_birth") AND (SUBSTRING(l.given_name, 1, 1) = '
    "SUBSTRING(r.given_name, 1, 1)) AND (SUBSTRING(l.family_name, 1, 1) = "
    "SUBSTRING(r.family_name, 1, 1))",
]
NAMES = st.sampled_from(["ANN", "BEN", "BELLA", "SMITH", "SMYTHE", None])


def _table(rows: list[tuple]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE records (record_key VARCHAR, given_name VARCHAR, family_name VARCHAR, "
        "date_of_birth DATE)"
    )
    con.executemany("INSERT INTO records VALUES (?, ?, ?, ?)", rows)
    return con


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(NAMES, NAMES, st.sampled_from(["2000-01-01", "1990-05-05", None])),
                min_size=1, max_size=15))  # fmt: skip
def test_pair_counts_equal_brute_force(rows: list[tuple]) -> None:
    keyed = [(f"r{i}", *r) for i, r in enumerate(rows)]
    con = _table(keyed)
    brute = {
        RULES[0]: lambda a, b: a[2] is not None and a[2] == b[2],
        RULES[1]: lambda a, b: None not in (a[2], a[3]) and (a[2], a[3]) == (b[2], b[3]),
        # names the other way round: symmetric, so one orientation per pair is enough
        RULES[2]: lambda a, b: None not in (a[1], a[2]) and (a[1], a[2]) == (b[2], b[1]),
        RULES[3]: lambda a, b: (
            None not in (a[1], a[2], a[3], b[1], b[2])
            and (a[1][0], a[2][0], a[3]) == (b[1][0], b[2][0], b[3])
        ),
    }
    for rule, match in brute.items():
        got, _, _ = rule_pairs(con, "records", rule)
        expected = sum(1 for a, b in itertools.combinations(keyed, 2) if match(a, b))
        assert got == expected, rule


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(NAMES, NAMES, st.sampled_from(["2000-01-01", "1990-05-05", None])),
                min_size=1, max_size=15))  # fmt: skip
def test_blocking_one_rule_at_a_time_gives_each_pair_once_under_its_first_rule(
    rows: list[tuple],
) -> None:
    keyed = [(f"r{i}", *r) for i, r in enumerate(rows)]
    con = _table(keyed)
    rules = [RULES[1], RULES[2], RULES[0]]
    n = block_pairs(con, "records", "record_key", rules, "blocked")
    got = con.sql("SELECT join_key_l, join_key_r, match_key FROM blocked").fetchall()
    matches = [
        lambda a, b: None not in (a[2], a[3]) and (a[2], a[3]) == (b[2], b[3]),
        lambda a, b: None not in (a[1], a[2]) and (a[1], a[2]) == (b[2], b[1]),
        lambda a, b: a[2] is not None and a[2] == b[2],
    ]
    expected = []
    for a, b in itertools.combinations(keyed, 2):
        a, b = sorted((a, b))
        first = next((i for i, m in enumerate(matches) if m(a, b)), None)
        if first is not None:
            expected.append((a[0], b[0], str(first)))
    assert sorted(got) == sorted(expected) and n == len(expected)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProjectConfig, Path]:
    """A published demo project and its standardised records (from the release) as Parquet."""
    root = tmp_path_factory.mktemp("blocking")
    config = load_config(make_demo_project(root, persons=600, seed=21))
    release = run_steps(config).release
    assert release is not None
    parquet = root / "records.parquet"
    with duckdb.connect(release, read_only=True) as con:
        con.execute(f"COPY (SELECT * EXCLUDE (person_id) FROM records) TO '{parquet}'")
    return config, parquet


def _scored_pairs(
    con: duckdb.DuckDBPyConnection, work: Path, parquet: Path, model: ModelArtefact,
    policy: ClusterPolicy,
) -> set[tuple[str, str, float, str]]:  # fmt: skip
    """Link the records of ``parquet`` in ``con`` (work database ``work``): each scored pair with
    its weight and grade."""
    load_records(con, [parquet])
    predict_and_cluster(con, model, policy, predict_threshold=0.01, work_db=work)
    return set(
        con.sql(
            "SELECT record_key_l, record_key_r, round(match_weight, 9), grade FROM pairs"
        ).fetchall()
    )


@pytest.mark.parametrize("parts", [1, 3])
def test_low_memory_blocking_scores_the_same_pairs_as_splink(
    published: tuple[ProjectConfig, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    parts: int,
) -> None:
    config, parquet = published
    model, policy = load_model(config), cluster_policy(config)
    monkeypatch.setattr(link, "scoring_parts", lambda *_: parts)
    scored = {}
    for low in (False, True):
        monkeypatch.setattr(link, "needs_low_memory_blocking", lambda *_, low=low: low)
        work = tmp_path / f"low-{low}.duckdb"
        with duckdb.connect(str(work)) as con, caplog.at_level("INFO", "linkage.link"):
            scored[low] = _scored_pairs(con, work, parquet, model, policy)
        assert ("one rule at a time" in caplog.text) == low
    assert f"scoring them in {parts} part(s)" in caplog.text
    assert scored[True] == scored[False] and len(scored[True]) > 100


def test_one_statement_out_of_memory_falls_back_to_one_rule_at_a_time(
    published: tuple[ProjectConfig, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The estimate of what Splink's one statement needs can be wrong: a real DuckDB out of memory
    there (a 1 MB limit during that statement only) must not stop the run, and must give the
    pairs the one statement gives."""
    config, parquet = published
    model, policy = load_model(config), cluster_policy(config)
    monkeypatch.setattr(link, "needs_low_memory_blocking", lambda *_: False)
    scoring = link._predict_into_pairs
    starved: list[bool] = []

    def starve_the_first(con: duckdb.DuckDBPyConnection, *a: object, **k: object) -> None:
        if starved:
            return scoring(con, *a, **k)
        starved.append(True)
        limit = con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
        con.execute("SET memory_limit = '1MB'")
        try:
            return scoring(con, *a, **k)
        finally:
            con.execute(f"SET memory_limit = '{limit}'")

    scored = {}
    for starve in (False, True):
        if starve:
            monkeypatch.setattr(link, "_predict_into_pairs", starve_the_first)
        work = tmp_path / f"oom-{starve}.duckdb"
        with duckdb.connect(str(work)) as con, caplog.at_level("INFO", "linkage.link"):
            scored[starve] = _scored_pairs(con, work, parquet, model, policy)
            leftovers = con.sql(
                "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '__splink%'"
            ).fetchall()
            assert leftovers == []
        assert ("ran out of memory" in caplog.text) == starve
        assert ("one rule at a time" in caplog.text) == starve
    assert starved == [True]
    assert scored[True] == scored[False] and len(scored[True]) > 100


def test_the_match_prior_is_splinks_estimate(published: tuple[ProjectConfig, Path]) -> None:
    _, parquet = published
    con = duckdb.connect()
    load_records(con, [parquet])
    rules = [["id_nhs_number"], ["given_name", "family_name", "date_of_birth"]]
    linker = Linker(
        DuckDBAPI(connection=con).register("records"),
        SettingsCreator(
            link_type="dedupe_only", unique_id_column_name="record_key", comparisons=[]
        ),
    )
    linker.training.estimate_probability_two_random_records_match(
        [block_on(*r) for r in rules], recall=0.8
    )
    splink_prior = linker._settings_obj._probability_two_random_records_match
    assert match_prior(con, "records", rules, recall=0.8) == pytest.approx(splink_prior, rel=1e-12)


def test_a_placeholder_over_budget_stops_with_rule_and_value(tmp_path: Path) -> None:
    rows = [(f"r{i}", f"G{i}", "UNKNOWN", "1901-01-01") for i in range(300)]
    rows += [(f"s{i}", f"G{i}", f"F{i}", f"1980-02-{1 + i % 28:02d}") for i in range(300)]
    con = _table(rows)
    settings_path = tmp_path / "model.json"
    settings_path.write_text(json.dumps({"blocking_rules_to_generate_predictions": [
        {"blocking_rule": r} for r in RULES]}))  # fmt: skip
    counts = check_blocking_budget(con, "records", settings_path, budget=50_000)
    assert counts[1].pairs == 300 * 299 // 2
    with pytest.raises(BlockingBudgetError) as e:
        check_blocking_budget(con, "records", settings_path, budget=10_000)
    assert "family_name" in str(e.value) and "UNKNOWN" in str(e.value)
    assert "44,850 pairs" in str(e.value) and "model.max_pairs_per_rule" in str(e.value)
    assert "44,850 of them share" in str(e.value)  # n(n-1)/2 pairs in a group of n


def test_a_common_full_name_alone_makes_no_candidate_pair(tmp_path: Path) -> None:
    """Names held by more than ``max_records`` training records are listed with the model; two
    records sharing only such a name are not paired by the full-name rule, but still are by a
    rule on what else they share, and a rarer name still pairs on its own."""
    rows = [
        ("a1", "ANN", "SMITH", "1980-01-01"),
        ("a2", "ANN", "SMITH", "1980-01-01"),
        ("a3", "ANN", "SMITH", "1975-06-30"),
        ("b1", "BEN", "JONES", "1990-02-02"),
        ("b2", "BEN", "JONES", "1991-03-03"),
        ("c1", "ANN", None, "1975-06-30"),
    ]
    con = _table(rows)
    assert save_common_names(con, "records", tmp_path, max_records=2) == 1
    common = tmp_path / "common_names.parquet"
    assert con.sql(f"SELECT * FROM '{common}'").fetchall() == [("ANN", "SMITH")]
    parquet = tmp_path / "records.parquet"
    con.execute(f"COPY records TO '{parquet}'")
    keys = {}
    for names in (None, common):
        load_records(con, [parquet], common_names=names)
        keys[names] = dict(con.sql(f"SELECT record_key, {NAME_KEY} FROM records").fetchall())
    assert keys[None] == {
        "a1": "ANN|SMITH", "a2": "ANN|SMITH", "a3": "ANN|SMITH",
        "b1": "BEN|JONES", "b2": "BEN|JONES", "c1": None,
    }  # fmt: skip
    assert keys[common] == {**keys[None], "a1": None, "a2": None, "a3": None}
    linker = Linker(
        DuckDBAPI(connection=con).register("records"),
        SettingsCreator(
            link_type="dedupe_only",
            unique_id_column_name="record_key",
            comparisons=[cl.ExactMatch("date_of_birth")],
            blocking_rules_to_generate_predictions=[
                block_on(NAME_KEY),
                block_on("family_name", "date_of_birth"),
            ],
        ),
    )
    pairs = linker.inference.predict().as_duckdbpyrelation()
    found = set(pairs.select("record_key_l, record_key_r").fetchall())
    assert {tuple(sorted(p)) for p in found} == {("a1", "a2"), ("b1", "b2")}


def test_a_rule_that_is_not_an_equi_join_is_refused(tmp_path: Path) -> None:
    con = _table([("r1", "A", "B", None)])
    with pytest.raises(BlockingBudgetError, match="cannot be checked"):
        rule_pairs(con, "records", "levenshtein(l.given_name, r.given_name) < 2")


def test_pooled_m_counts_each_comparison_over_its_own_sessions_pairs(
    published: tuple[ProjectConfig, Path],
) -> None:
    """m of a comparison = its levels' shares of the match probability summed over the pairs that
    the EM sessions not blocked on its columns produce: here the names, which the session blocked
    on given and family name cannot estimate, against a predict over the other sessions alone."""
    config, parquet = published
    model = load_model(config)
    settings = json.loads(model.settings_path.read_text())
    con = duckdb.connect()
    load_records(con, [parquet])
    rules = [_rule_sql(b) for b in _em_blocks(model.fields, model.identifier_schemes)]
    pooled = _m_from_em_pairs(con, "records", settings, rules)
    own = [r for r in rules if "given_name" not in r]
    assert 0 < len(own) < len(rules)
    alone = dict(settings, blocking_rules_to_generate_predictions=own)
    pairs = Linker(DuckDBAPI(connection=con).register("records"), alone).inference.predict()
    shares = dict(
        con.sql(
            "SELECT gamma_name, sum(match_probability) / sum(sum(match_probability)) OVER () "
            f"FROM {pairs.physical_name} WHERE gamma_name >= 0 GROUP BY 1"
        ).fetchall()
    )
    (comparison,) = [c for c in pooled["comparisons"] if c["output_column_name"] == "name"]
    levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
    compared = 0
    for gamma, level in zip(range(len(levels) - 1, -1, -1), levels, strict=True):
        if gamma in shares and "m_probability" in level:
            assert level["m_probability"] == pytest.approx(shares[gamma], rel=1e-9)
            compared += 1
    assert compared >= 3
