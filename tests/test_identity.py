"""Stable person IDs across runs (linkage.identity): the rules, and properties over random runs."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.identity import assign_person_ids


class Index:
    """Successive runs of ``assign_person_ids`` over given clusterings, each release a real file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.previous: Path | None = None
        self.runs = 0

    def run(self, clusters: list[set[str]], *, shuffle: int | None = None) -> dict[str, str]:
        """Publish ``clusters``; return record_key -> person_id."""
        self.runs += 1
        run_id = f"2026010{self.runs}T000000Z"
        rows = [(k, min(c)) for c in clusters for k in c]
        if shuffle is not None:
            random.Random(shuffle).shuffle(rows)
        con = duckdb.connect()
        con.execute("CREATE TABLE clusters (record_key VARCHAR, cluster_id VARCHAR)")
        if rows:
            con.executemany("INSERT INTO clusters VALUES (?, ?)", rows)
        if self.previous is not None:
            con.execute(f"ATTACH '{self.previous}' AS prev (READ_ONLY)")
        self.result = assign_person_ids(con, run_id, previous=self.previous is not None)
        release = self.folder / f"{run_id}.duckdb"
        con.execute(f"ATTACH '{release}' AS rel")
        con.execute(
            "CREATE TABLE rel.records AS SELECT p.person_id, c.record_key "
            "FROM clusters c JOIN person_map p USING (cluster_id)"
        )
        con.execute("CREATE TABLE rel.lineage AS SELECT * FROM lineage")
        self.events = con.sql(
            "SELECT event, person_id, related_person_id FROM lineage_new ORDER BY ALL"
        ).fetchall()
        self.issued = {r[0] for r in con.sql("SELECT person_id FROM lineage").fetchall()}
        ids = dict(con.sql("SELECT record_key, person_id FROM rel.records").fetchall())
        con.close()
        self.previous = release
        return ids


def _persons(ids: dict[str, str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for k, p in ids.items():
        out.setdefault(p, set()).add(k)
    return out


@pytest.fixture
def index(tmp_path: Path) -> Index:
    return Index(tmp_path)


def test_first_run_creates_one_id_per_person(index: Index) -> None:
    ids = index.run([{"a1", "a2"}, {"b1"}])
    assert ids["a1"] == ids["a2"] != ids["b1"]
    assert all(p.startswith("P") and len(p) == 17 for p in ids.values())
    assert [e[0] for e in index.events] == ["created", "created"]


def test_a_merge_keeps_the_oldest_id_and_retires_the_other_with_a_redirect(index: Index) -> None:
    first = index.run([{"a1", "a2"}])
    second = index.run([{"a1", "a2"}, {"b1"}])  # b1's person is issued a run later
    merged = index.run([{"a1", "a2", "b1"}])
    assert set(merged.values()) == {first["a1"]}
    assert ("merged_into", second["b1"], first["a1"]) in index.events


def test_a_split_leaves_the_id_with_the_largest_part(index: Index) -> None:
    first = index.run([{"a1", "a2", "a3"}])
    split = index.run([{"a1", "a2"}, {"a3"}])
    assert split["a1"] == split["a2"] == first["a1"]
    assert split["a3"] != first["a1"]
    assert ("split_from", split["a3"], first["a1"]) in index.events


def test_a_person_with_no_record_left_is_retired_and_the_id_never_comes_back(
    index: Index,
) -> None:
    first = index.run([{"a1"}, {"b1"}])
    index.run([{"b1"}])
    assert ("retired", first["a1"], None) in index.events
    again = index.run([{"b1"}, {"a1"}])  # the record returns (e.g. an erasure was undone)
    assert again["a1"] != first["a1"]
    assert again["b1"] == first["b1"]


clusterings = st.lists(
    st.lists(st.integers(0, 30), min_size=1, max_size=4), min_size=1, max_size=12
)


def _normalise(raw: list[list[int]]) -> list[set[str]]:
    """Turn drawn lists into disjoint clusters of record keys."""
    seen: set[str] = set()
    clusters = []
    for c in raw:
        keys = {f"r{i:02d}" for i in c} - seen
        if keys:
            clusters.append(keys)
            seen |= keys
    return clusters


@settings(max_examples=60, deadline=None)
@given(before=clusterings, after=clusterings, seed=st.integers(0, 1000))
def test_id_properties_over_random_runs(
    tmp_path_factory: pytest.TempPathFactory,
    before: list[list[int]],
    after: list[list[int]],
    seed: int,
) -> None:
    index = Index(tmp_path_factory.mktemp("ids"))
    c1, c2 = _normalise(before), _normalise(after)
    ids1 = index.run(c1)
    issued_before = set(index.issued)

    # Unchanged input, in another row order: 100% the same IDs.
    assert index.run(c1, shuffle=seed) == ids1
    assert index.events == []

    ids2 = index.run(c2)
    persons2 = _persons(ids2)
    # One ID per cluster, distinct clusters get distinct IDs.
    assert sorted(map(sorted, persons2.values())) == sorted(map(sorted, c2))
    # A cluster that did not change keeps its ID.
    for c in c1:
        if c in c2:
            assert {ids2[k] for k in c} == {ids1[next(iter(c))]}
    # New IDs are never ones issued before.
    created = {p for e, p, _ in index.events if e in ("created", "split_from")}
    assert not created & issued_before
    # Every old ID is kept, merged into a live ID, or retired: none silently disappears.
    live = set(persons2)
    for old in set(ids1.values()):
        fate = [(e, r) for e, p, r in index.events if p == old]
        if old in live:
            assert fate == []
        else:
            assert len(fate) == 1, (old, fate)
            event, target = fate[0]
            assert event in ("merged_into", "retired")
            assert event == "retired" or target in live


def test_adding_one_percent_new_records_moves_no_unchanged_persons_id(index: Index) -> None:
    rng = random.Random(3)
    clusters = [{f"r{i}-{j}" for j in range(rng.randint(1, 3))} for i in range(500)]
    ids1 = index.run(clusters)
    grown = [set(c) for c in clusters]
    for i in range(len(clusters) // 100 * 2):  # 1% more records: half new persons, half joining
        if i % 2:
            grown.append({f"new-{i}"})
        else:
            grown[rng.randrange(len(grown))].add(f"new-{i}")
    ids2 = index.run(grown, shuffle=5)
    changed = [c for c in clusters if c not in grown]
    for c in clusters:
        if c in grown:
            assert ids2[next(iter(c))] == ids1[next(iter(c))]
    # and a cluster that only gained records keeps its ID too
    for c in changed:
        assert len({ids2[k] for k in c}) == 1 and ids2[next(iter(c))] == ids1[next(iter(c))]


def _assign(previous: Path, rows: list[tuple[str, str]], carried: list[str] | None) -> tuple:
    """IDs and events of one run over ``rows`` (record_key, cluster_id) after ``previous``."""
    con = duckdb.connect()
    con.execute("CREATE TABLE clusters (record_key VARCHAR, cluster_id VARCHAR)")
    con.executemany("INSERT INTO clusters VALUES (?, ?)", rows)
    con.execute(f"ATTACH '{previous}' AS prev (READ_ONLY)")
    if carried is not None:
        con.execute("CREATE TABLE carried (cluster_id VARCHAR)")
        for c in carried:
            con.execute("INSERT INTO carried VALUES (?)", [c])
    result = assign_person_ids(
        con, "20260109T000000Z", True, None if carried is None else "carried"
    )
    ids = con.sql(
        "SELECT record_key, person_id FROM clusters JOIN person_map USING (cluster_id) ORDER BY 1"
    ).fetchall()
    events = con.sql("SELECT * FROM lineage_new ORDER BY ALL").fetchall()
    con.close()
    return ids, events, result


@settings(max_examples=40, deadline=None)
@given(before=clusterings, after=clusterings, pick=st.integers(0, 2**12))
def test_carried_persons_get_the_ids_and_events_a_whole_assignment_gives(
    tmp_path_factory: pytest.TempPathFactory,
    before: list[list[int]],
    after: list[list[int]],
    pick: int,
) -> None:
    """An incremental run names the previous persons it carried over whole (their cluster ID is
    their person ID); looking only at the other clusters gives what looking at all gives."""
    index = Index(tmp_path_factory.mktemp("carried"))
    c1 = _normalise(before)
    ids1 = index.run(c1)
    assert index.previous is not None
    # Some persons unchanged, the other records clustered afresh.
    kept = [c for i, c in enumerate(c1) if pick >> (i % 12) & 1]
    taken = set().union(*kept)
    rest = [c - taken for c in _normalise(after) if c - taken]
    rows = [(k, ids1[min(c)]) for c in kept for k in c]
    rows += [(k, min(c)) for c in rest for k in c]
    carried = sorted({ids1[min(c)] for c in kept})
    whole = _assign(index.previous, rows, None)
    assert _assign(index.previous, rows, carried) == whole
