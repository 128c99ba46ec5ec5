"""Stable person IDs through the whole pipeline: reruns, shuffled rows, 1% more records."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import duckdb
import polars as pl
import pytest

from linkage.config import load_config
from tests.conftest import make_demo_project
from tests.test_pipeline import run_steps


def _ids(release: str | None) -> dict[str, str]:
    assert release is not None
    with duckdb.connect(release, read_only=True) as con:
        return dict(con.sql("SELECT record_key, person_id FROM records").fetchall())


def _persons(ids: dict[str, str]) -> dict[frozenset[str], str]:
    groups: dict[str, set[str]] = {}
    for k, p in ids.items():
        groups.setdefault(p, set()).add(k)
    return {frozenset(v): p for p, v in groups.items()}


def _shuffle_sources(data: Path, seed: int) -> None:
    rng = random.Random(seed)
    for path in sorted(data.glob("*.csv")):
        if path.name == "truth.csv":
            continue
        with path.open(newline="", encoding="utf-8") as f:
            header, *rows = list(csv.reader(f))
        rng.shuffle(rows)
        with path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([header, *rows])
    for path in sorted(data.glob("*.parquet")):
        pl.read_parquet(path).sample(fraction=1.0, shuffle=True, seed=seed).write_parquet(path)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_project(tmp_path_factory.mktemp("ids"), persons=1_000, seed=9)


def test_unchanged_and_shuffled_inputs_give_the_same_persons_and_ids(project: Path) -> None:
    config = load_config(project)
    first = _ids(run_steps(config).release)
    assert _ids(run_steps(config).release) == first  # unchanged input: 100% identical
    _shuffle_sources(project.parent / "data", seed=1)
    assert _ids(run_steps(config).release) == first  # every source's rows in a new order


def test_one_percent_more_records_moves_no_unchanged_persons_id(tmp_path: Path) -> None:
    path = make_demo_project(tmp_path, persons=1_000, seed=10)
    source = tmp_path / "data" / "nhs_trust.csv"
    full = source.read_bytes()
    with source.open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    total = sum(1 for _ in (tmp_path / "data" / "truth.csv").open()) - 1
    held_back = set(random.Random(2).sample(range(len(rows)), total // 100))
    with source.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *(r for i, r in enumerate(rows) if i not in held_back)])
    config = load_config(path)
    before = _persons(_ids(run_steps(config).release))
    source.write_bytes(full)  # the 1% arrive
    record = run_steps(config)
    after = _persons(_ids(record.release))
    unchanged = before.keys() & after.keys()
    assert len(unchanged) > 0.9 * len(before)
    assert all(after[c] == before[c] for c in unchanged)
    with duckdb.connect(str(record.release), read_only=True) as con:
        events = dict(con.sql("SELECT event, count(*) FROM lineage GROUP BY 1").fetchall())
        run_events = con.execute(
            "SELECT count(*) FROM lineage WHERE run_id = ?", [record.run_id]
        ).fetchall()[0][0]
    assert events["created"] >= len(before)  # the first run's persons, then the newcomers
    assert 0 < run_events <= 3 * (total // 100)
