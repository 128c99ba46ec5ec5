"""Clustering safety: vetoes, deterministic links, cluster rebuilds and grades (linkage.cluster)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.cluster import ClusterPolicy, Names, cluster, rebuild
from linkage.standardise.nicknames import register_nicknames, variants_sql

POLICY = ClusterPolicy(
    trusted=("id_nhs_number",),
    identifiers=("id_nhs_number",),
    cluster_threshold=0.99,
    certain_threshold=0.99999,
    max_cluster_size=6,
)


def _con(records: list[tuple], pairs: list[tuple[str, str, float]]) -> duckdb.DuckDBPyConnection:
    """records: (key, given, middle, family, dob, nhs); pairs: (key_l, key_r, probability)."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE raw (record_key VARCHAR, given_name VARCHAR, middle_names VARCHAR, "
        "family_name VARCHAR, date_of_birth DATE, id_nhs_number VARCHAR)"
    )
    con.executemany("INSERT INTO raw VALUES (?, ?, ?, ?, ?, ?)", records)
    register_nicknames(con)
    con.execute(
        f"CREATE TABLE records AS SELECT r.*, {variants_sql('r.given_name')} AS "
        "given_name_variants FROM raw r LEFT JOIN __nicknames n ON n.nickname = r.given_name"
    )
    con.execute(
        "CREATE TABLE pairs (record_key_l VARCHAR, record_key_r VARCHAR, match_weight DOUBLE, "
        "match_probability DOUBLE)"
    )
    con.executemany(
        "INSERT INTO pairs VALUES (?, ?, ?, ?)",
        [(min(a, b), max(a, b), math.log2(p / (1 - p)), p) for a, b, p in pairs],
    )
    return con


def _persons(con: duckdb.DuckDBPyConnection) -> set[frozenset[str]]:
    rows = con.sql("SELECT list(record_key) FROM clusters GROUP BY cluster_id").fetchall()
    return {frozenset(r[0]) for r in rows}


def _decision(con: duckdb.DuckDBPyConnection, a: str, b: str) -> tuple[bool, str, str | None]:
    (row,) = con.execute(
        "SELECT linked, grade, veto FROM pairs WHERE record_key_l = ? AND record_key_r = ?",
        [min(a, b), max(a, b)],
    ).fetchall()
    return row


D = date(2015, 3, 1)


def test_twins_with_different_given_names_are_never_linked() -> None:
    con = _con(
        [("a", "OLIVER", None, "SMITH", D, None), ("b", "HARRY", None, "SMITH", D, None)],
        [("a", "b", 0.9999)],
    )
    result = cluster(con, POLICY)
    assert _decision(con, "a", "b") == (False, "possible", "given_name_conflict")
    assert _persons(con) == {frozenset("a"), frozenset("b")}
    assert result.vetoes == {"given_name_conflict": 1} and result.links == 0


@pytest.mark.parametrize(
    ("g1", "m1", "g2"),
    [
        ("WILLIAM", None, "BILL"),  # a short form from the reference list
        ("MUHAMMAD", None, "MO"),  # and from the UK supplement (nicknames_uk.txt)
        ("MARGARET", None, "MAISIE"),
        ("WILLIAM", None, "LIAM"),  # one contains the other
        ("J", None, "JOHN"),  # an initial
        ("IAN", None, "INA"),  # one typo
        ("HANNAH", "MARY", "MARY"),  # goes by the middle name
    ],
)
def test_given_names_that_can_be_one_person_do_not_veto(g1: str, m1: str | None, g2: str) -> None:
    con = _con([("a", g1, m1, "SMITH", D, None), ("b", g2, None, "SMITH", D, None)],
               [("a", "b", 0.995)])  # fmt: skip
    cluster(con, POLICY)
    assert _decision(con, "a", "b") == (True, "probable", None)


def test_shared_trusted_number_links_with_certain_grade_even_below_threshold() -> None:
    con = _con(
        [("a", "MARY", None, "JONES", D, "9434765919"),
         ("b", "MOLLIE", None, "EVANS", D, "9434765919")],  # name change and a nickname
        [("a", "b", 0.7)],
    )  # fmt: skip
    result = cluster(con, POLICY)
    assert _decision(con, "a", "b") == (True, "certain", None)
    assert result.deterministic_links == 1 and result.grades["certain"] == 1


def test_a_certain_pair_is_not_vetoed_on_given_name_and_guards_can_be_turned_off() -> None:
    """The family vetoes guard the uncertain band only; a benchmark without families can drop
    them (identifier conflicts still apply)."""
    twins = [("a", "OLIVER", None, "SMITH", D, None), ("b", "HARRY", None, "SMITH", D, None)]
    con = _con(twins, [("a", "b", 0.999999)])
    cluster(con, POLICY)
    assert _decision(con, "a", "b") == (True, "certain", None)
    con = _con(twins, [("a", "b", 0.995)])
    cluster(con, replace(POLICY, household_guards=False))
    assert _decision(con, "a", "b") == (True, "probable", None)


def test_shared_number_with_name_and_birth_date_both_conflicting_is_vetoed() -> None:
    """A parent's number on a child's record: one agreement against two disagreements."""
    con = _con(
        [("a", "MARY", None, "JONES", date(1980, 1, 2), "9434765919"),
         ("b", "LILY", None, "JONES", date(2012, 6, 9), "9434765919")],
        [("a", "b", 0.999)],
    )  # fmt: skip
    cluster(con, POLICY)
    assert _decision(con, "a", "b") == (False, "possible", "date_of_birth_conflict")


def test_different_trusted_numbers_veto_a_strong_pair() -> None:
    con = _con(
        [("a", "JOHN", None, "TAYLOR", D, "9434765919"),
         ("b", "JOHN", None, "TAYLOR", D, "4010232137")],
        [("a", "b", 0.99999)],
    )  # fmt: skip
    cluster(con, POLICY)
    assert _decision(con, "a", "b") == (False, "possible", "identifier_conflict")


def test_same_name_born_decades_apart_is_vetoed_but_a_digit_typo_is_not() -> None:
    con = _con(
        [("a", "JOHN", None, "TAYLOR", date(1960, 4, 1), None),
         ("b", "JOHN", None, "TAYLOR", date(1990, 7, 9), None),
         ("c", "JOHN", None, "TAYLOR", date(1960, 4, 7), None),
         ("d", "JOHN", None, "TAYLOR", date(2001, 1, 18), None),
         ("e", "JOHN", None, "TAYLOR", date(1991, 1, 18), None),  # 01 typed as 91
         ("f", "JOHN", None, "TAYLOR", date(1981, 1, 19), None)],  # and two digits more
        [("a", "b", 0.995), ("a", "c", 0.995), ("d", "e", 0.995), ("d", "f", 0.995)],
    )  # fmt: skip
    cluster(con, POLICY)
    assert _decision(con, "a", "b")[2] == "date_of_birth_conflict"
    assert _decision(con, "a", "c") == (True, "probable", None)
    assert _decision(con, "d", "e") == (True, "probable", None)
    assert _decision(con, "d", "f")[2] == "date_of_birth_conflict"


def test_chain_through_a_third_record_cannot_join_conflicting_records() -> None:
    """b (no given name) links to both twins; the twins conflict, so b goes with the stronger."""
    con = _con(
        [("a", "OLIVER", None, "SMITH", D, None), ("b", None, None, "SMITH", D, None),
         ("c", "HARRY", None, "SMITH", D, None)],
        [("a", "b", 0.9995), ("b", "c", 0.995), ("a", "c", 0.999)],
    )  # fmt: skip
    result = cluster(con, POLICY)
    assert _persons(con) == {frozenset("ab"), frozenset("c")}
    assert _decision(con, "b", "c") == (False, "possible", "cluster_conflict")
    assert result.rebuilt_clusters == 1


def test_a_record_holding_both_names_explains_a_given_name_conflict() -> None:
    """LEWIS KOFI SCOTT (NHS) goes by LEWIS with the police and KOFI with social care: the two
    short records conflict on their own, not once the full record is in the person."""
    con = _con(
        [("nhs", "LEWIS", "KOFI", "SCOTT", D, "9434765919"),
         ("police", "LEWIS", None, "SCOTT", D, None),
         ("social", "KOFI", None, "SCOTT", D, None)],
        [("nhs", "police", 0.9999), ("nhs", "social", 0.9995), ("police", "social", 0.9995)],
    )  # fmt: skip
    cluster(con, POLICY)
    assert _decision(con, "police", "social")[2] == "given_name_conflict"
    assert _persons(con) == {frozenset(["nhs", "police", "social"])}


def test_twins_bridged_by_a_record_without_their_names_stay_apart() -> None:
    """A third record that holds neither twin's name (here a different middle name) explains
    nothing: the twins stay two persons."""
    con = _con(
        [("a1", "OLIVER", None, "SMITH", D, None), ("a2", "OLIVER", "JACK", "SMITH", D, None),
         ("b1", "HARRY", None, "SMITH", D, None)],
        [("a1", "a2", 0.99999), ("a2", "b1", 0.9995), ("a1", "b1", 0.9995)],
    )  # fmt: skip
    cluster(con, POLICY)
    assert _persons(con) == {frozenset(["a1", "a2"]), frozenset(["b1"])}


@pytest.mark.parametrize(
    ("g1", "m1", "g2"),
    [
        ("JAEMS", None, "JIM"),  # a typo of JAMES, of which JIM is a short form
        ("DANIEL", "JAMES", "JMES"),  # goes by a mistyped middle name
    ],
)
def test_a_short_form_or_middle_name_one_typo_away_does_not_veto(
    g1: str, m1: str | None, g2: str
) -> None:
    con = _con([("a", g1, m1, "SMITH", D, None), ("b", g2, None, "SMITH", D, None)],
               [("a", "b", 0.995)])  # fmt: skip
    cluster(con, POLICY)
    assert _decision(con, "a", "b") == (True, "probable", None)


def test_short_names_one_letter_apart_through_short_forms_still_veto() -> None:
    """The typo allowance between short forms needs 4 letters: TOM and TIM's twin KIM are not
    made variants through their 3-letter forms."""
    con = _con([("a", "KIM", None, "SMITH", D, None), ("b", "TOM", None, "SMITH", D, None)],
               [("a", "b", 0.995)])  # fmt: skip
    cluster(con, POLICY)
    assert _decision(con, "a", "b")[2] == "given_name_conflict"


def test_grades_follow_the_thresholds() -> None:
    con = _con(
        [(k, "ANNA", None, "LEE", D, None) for k in "abcd"],
        [("a", "b", 0.999999), ("b", "c", 0.995), ("c", "d", 0.6)],
    )
    result = cluster(con, POLICY)
    assert _decision(con, "a", "b")[1] == "certain"
    assert _decision(con, "b", "c")[1] == "probable"
    assert _decision(con, "c", "d") == (False, "possible", None)
    assert result.grades == {"certain": 1, "probable": 1, "possible": 1}
    assert _persons(con) == {frozenset("abc"), frozenset("d")}


def test_oversized_cluster_is_capped() -> None:
    keys = [f"k{i:02d}" for i in range(10)]
    con = _con(
        [(k, "ANNA", None, "LEE", D, None) for k in keys],
        [(a, b, 0.9999) for a, b in zip(keys, keys[1:], strict=False)],
    )
    result = cluster(con, POLICY)
    sizes = sorted(len(p) for p in _persons(con))
    assert max(sizes) <= POLICY.max_cluster_size and sum(sizes) == 10
    assert result.vetoes.get("cluster_size", 0) >= 1


def test_weak_bridge_between_two_groups_is_refused_but_a_certain_one_is_kept() -> None:
    edges = [("a1", "a2", True), ("b1", "b2", True), ("a2", "b1", False)]
    _, refused = rebuild(["a1", "a2", "b1", "b2"], edges, [], max_size=10)
    assert refused == {("a2", "b1"): "weak_bridge"}
    supported = [*edges, ("a1", "b2", False)]  # two links between the groups
    assignment, refused = rebuild(["a1", "a2", "b1", "b2"], supported, [], max_size=10)
    assert len(set(assignment.values())) == 1 and refused == {}
    certain = [("a1", "a2", True), ("b1", "b2", True), ("a2", "b1", True)]
    assignment, _ = rebuild(["a1", "a2", "b1", "b2"], certain, [], max_size=10)
    assert len(set(assignment.values())) == 1


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(2, 12),
    data=st.data(),
    max_size=st.integers(2, 8),
)
def test_rebuild_invariants(n: int, data: st.DataObject, max_size: int) -> None:
    """Whatever the edges and conflicts: every key is assigned; no group holds a hard conflict,
    nor a names conflict that no third record of the group explains, nor more than max_size keys;
    refused edges end up between groups; ids are group minima."""
    keys = [f"r{i:02d}" for i in range(n)]
    key = st.sampled_from(keys)
    edges = data.draw(
        st.lists(st.tuples(key, key, st.booleans()).filter(lambda e: e[0] != e[1]), max_size=30)
    )
    pair = st.tuples(key, key).filter(lambda p: p[0] != p[1])
    conflicts = data.draw(st.lists(st.tuples(key, key, st.sampled_from(["hard", "names"])).filter(
        lambda c: c[0] != c[1]), max_size=6))  # fmt: skip
    named = data.draw(st.sets(key))
    differ = data.draw(st.lists(pair, max_size=20)) + [
        (a, b) for a, b, k in conflicts if k == "names"
    ]
    names = Names.of(named, differ)
    assignment, refused = rebuild(keys, edges, conflicts, max_size, names)
    assert set(assignment) == set(keys)
    groups: dict[str, set[str]] = {}
    for k, g in assignment.items():
        groups.setdefault(g, set()).add(k)
    for g, members in groups.items():
        assert g == min(members)
        assert len(members) <= max_size
    for a, b, kind in conflicts:
        if assignment[a] == assignment[b]:
            assert kind == "names"
            group = groups[assignment[a]]
            assert names.fits(a, group - {a}) or names.fits(b, group - {b})
    for a, b in refused:
        assert assignment[a] != assignment[b]
