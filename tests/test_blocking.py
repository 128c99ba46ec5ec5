"""The blocking budget: pair counts per rule are exact, and a placeholder over budget stops."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.blocking import _pairs, check_blocking_budget
from linkage.errors import BlockingBudgetError

RULES = [
    'l."family_name" = r."family_name"',
    '(l."family_name" = r."family_name") AND (l."date_of_birth" = r."date_of_birth")',
    "l.given_name = r.family_name AND l.family_name = r.given_name",
]
NAMES = st.sampled_from(["ANN", "BEN", "SMITH", None])


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
    }
    for rule, match in brute.items():
        got, _, _ = _pairs(con, "records", rule)
        expected = sum(1 for a, b in itertools.combinations(keyed, 2) if match(a, b))
        assert got == expected, rule


def test_a_placeholder_over_budget_stops_with_rule_and_value(tmp_path: Path) -> None:
    rows = [(f"r{i}", f"G{i}", "UNKNOWN", "1901-01-01") for i in range(300)]
    rows += [(f"s{i}", f"G{i}", f"F{i}", "1980-02-03") for i in range(300)]
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


def test_a_rule_that_is_not_an_equi_join_is_refused(tmp_path: Path) -> None:
    con = _table([("r1", "A", "B", None)])
    with pytest.raises(BlockingBudgetError, match="cannot be checked"):
        _pairs(con, "records", "levenshtein(l.given_name, r.given_name) < 2")
