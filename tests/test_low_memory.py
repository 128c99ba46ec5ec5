"""A nightly run on extracts larger than DuckDB's memory limit completes, spilling to disk.

The run is the library's nightly steps with a saved model (trained once, on a small demo, as a
data team trains and then runs nightly) on 850,000 demo persons, whose extracts (68 MB) are
larger than the 64 MB memory limit: blocking one rule at a time, scoring in parts, clustering,
IDs and the release all have to work within it. It takes a few minutes.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from pathlib import Path

import duckdb
import pytest

from linkage.config import load_config
from linkage.db import connect, memory_limit_bytes
from tests.conftest import make_demo_project
from tests.test_pipeline import run_steps

pytestmark = pytest.mark.slow


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def test_a_run_on_extracts_larger_than_the_memory_limit_completes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    small = load_config(make_demo_project(tmp_path / "small", persons=2_000, seed=5))
    run_steps(small)  # the first run trains and saves the model

    path = make_demo_project(tmp_path / "big", persons=850_000, seed=3)
    text = re.sub(r"memory_limit: .*", "memory_limit: 64MB", path.read_text())
    path.write_text(re.sub(r"threads: .*", "threads: 1", text))
    config = load_config(path)
    shutil.copytree(small.model.dir, config.model.dir)
    extracts = (
        _bytes(tmp_path / "big" / "data") - (tmp_path / "big" / "data" / "truth.csv").stat().st_size
    )
    with connect(":memory:", config) as con:
        limit = memory_limit_bytes(con)
    assert limit <= 64 * 2**20 < extracts

    spilled, done = [0], threading.Event()

    def watch() -> None:  # DuckDB removes its spill files when a statement ends: sample them
        while not done.wait(0.5):
            spilled[0] = max(spilled[0], _bytes(config.duckdb.temp_directory))

    threading.Thread(target=watch, daemon=True).start()
    try:
        with caplog.at_level(logging.INFO, "linkage"):
            run = run_steps(config)
    finally:
        done.set()

    assert spilled[0] > limit
    parts = re.search(r"one rule at a time \(low memory\); scoring them in (\d+) part", caplog.text)
    assert parts and int(parts[1]) > 1
    assert run.records == sum(e.standardised for e in run.extracts)
    assert run.records > 0.99 * sum(e.delivered for e in run.extracts)  # quarantined aside
    assert run.release is not None
    with duckdb.connect(run.release, read_only=True) as con:
        (records, persons, unplaced) = con.sql(
            "SELECT count(*), count(DISTINCT person_id), count(*) FILTER (person_id IS NULL) "
            "FROM records"
        ).fetchall()[0]
    assert (records, persons, unplaced) == (run.records, run.persons, 0)
    assert 0.5 * 850_000 < persons < 1.1 * 850_000
