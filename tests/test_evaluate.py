"""`linkage evaluate`: pairwise and B-cubed figures agree with a brute-force oracle."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.errors import QueryError
from linkage.evaluate import evaluate


def _agency(rid: str) -> str:
    """Records named ``b...`` come from agency b, all others from agency a."""
    return "b" if rid.startswith("b") else "a"


def make_release(path: Path, predicted: dict[str, str]) -> None:
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE records (agency VARCHAR, source_record_id VARCHAR, person_id VARCHAR)"
    )
    con.executemany(
        "INSERT INTO records VALUES (?, ?, ?)", [(_agency(r), r, p) for r, p in predicted.items()]
    )
    con.execute("CREATE VIEW crosswalk AS SELECT agency, source_record_id, person_id FROM records")
    con.close()


def make_truth(path: Path, truth: dict[str, str], households: dict[str, str] | None = None) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["agency", "source_record_id", "person_id"] + (["household_id"] if households else [])
        )
        for rid, pid in truth.items():
            w.writerow([_agency(rid), rid, pid] + ([households[rid]] if households else []))


def oracle(pred: dict[str, str], true: dict[str, str]) -> tuple[float, float, float, float]:
    keys = sorted(pred)
    pairs = list(itertools.combinations(keys, 2))
    pp = {p for p in pairs if pred[p[0]] == pred[p[1]]}
    tp = {p for p in pairs if true[p[0]] == true[p[1]]}
    precision = len(pp & tp) / len(pp) if pp else 1.0
    recall = len(pp & tp) / len(tp) if tp else 1.0
    bp = br = 0.0
    for k in keys:
        c = {x for x in keys if pred[x] == pred[k]}
        t = {x for x in keys if true[x] == true[k]}
        bp += len(c & t) / len(c)
        br += len(c & t) / len(t)
    return precision, recall, bp / len(keys), br / len(keys)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=25),
)
def test_figures_match_brute_force_oracle(
    tmp_path_factory: pytest.TempPathFactory, labels: list[tuple[int, int]]
) -> None:
    tmp = tmp_path_factory.mktemp("ev")
    pred = {f"r{i}": f"P{p}" for i, (p, _) in enumerate(labels)}
    true = {f"r{i}": f"T{t}" for i, (_, t) in enumerate(labels)}
    make_release(tmp / "rel.duckdb", pred)
    make_truth(tmp / "truth.csv", true)
    ev = evaluate(tmp / "rel.duckdb", tmp / "truth.csv")
    p, r, bp, br = oracle(pred, true)
    assert ev.pairwise_precision == pytest.approx(p)
    assert ev.pairwise_recall == pytest.approx(r)
    assert ev.bcubed_precision == pytest.approx(bp)
    assert ev.bcubed_recall == pytest.approx(br)
    assert ev.records == len(labels)


def test_over_merges_splits_and_household_merges_are_counted(tmp_path: Path) -> None:
    # r1, r2 are one person; r3 is their sibling (same household) wrongly merged in; r4 split off.
    pred = {"r1": "P1", "r2": "P1", "r3": "P1", "r4": "P2", "r5": "P3"}
    true = {"r1": "A", "r2": "A", "r3": "B", "r4": "A", "r5": "C"}
    hh = {"r1": "H1", "r2": "H1", "r3": "H1", "r4": "H1", "r5": "H2"}
    make_release(tmp_path / "rel.duckdb", pred)
    make_truth(tmp_path / "truth.csv", {**true, "r6": "D"}, {**hh, "r6": "H3"})
    ev = evaluate(tmp_path / "rel.duckdb", tmp_path / "truth.csv")
    assert ev.over_merged_persons == 1
    assert ev.split_persons == 1
    assert ev.false_pairs_within_household == 2  # (r1, r3) and (r2, r3)
    assert ev.truth_records_not_published == 1
    assert ev.true_positive_pairs == 1 and ev.predicted_pairs == 3 and ev.true_pairs == 3


def test_truth_file_without_required_columns_is_refused(tmp_path: Path) -> None:
    make_release(tmp_path / "rel.duckdb", {"r1": "P1"})
    (tmp_path / "truth.csv").write_text("agency,id,person\na,r1,X\n")
    with pytest.raises(QueryError, match=r"lacks column\(s\) \['person_id', 'source_record_id'\]"):
        evaluate(tmp_path / "rel.duckdb", tmp_path / "truth.csv")


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("ab"), st.integers(0, 4), st.integers(0, 4)),
        min_size=1,
        max_size=20,
    ),
)
def test_per_agency_pair_figures_match_brute_force(
    tmp_path_factory: pytest.TempPathFactory, labels: list[tuple[str, int, int]]
) -> None:
    tmp = tmp_path_factory.mktemp("ev")
    pred = {f"{a}{i}": f"P{p}" for i, (a, p, _) in enumerate(labels)}
    true = {f"{a}{i}": f"T{t}" for i, (a, _, t) in enumerate(labels)}
    make_release(tmp / "rel.duckdb", pred)
    make_truth(tmp / "truth.csv", true)
    ev = evaluate(tmp / "rel.duckdb", tmp / "truth.csv")
    got = {p.agencies: (p.true_pairs, p.predicted_pairs, p.true_positive_pairs)
           for p in ev.agency_pairs}  # fmt: skip
    expected: dict[str, list[int]] = {}
    for x, y in itertools.combinations(sorted(pred), 2):
        key = " + ".join(sorted((_agency(x), _agency(y))))
        counts = expected.setdefault(key, [0, 0, 0])
        counts[0] += true[x] == true[y]
        counts[1] += pred[x] == pred[y]
        counts[2] += true[x] == true[y] and pred[x] == pred[y]
    assert {k: v for k, v in got.items() if any(v)} == {
        k: tuple(v) for k, v in expected.items() if any(v)
    }
    assert sum(p.true_positive_pairs for p in ev.agency_pairs) == ev.true_positive_pairs
