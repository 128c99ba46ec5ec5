"""Releases: readers in another process during publishes, keeping the last N, rollback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from linkage import pipeline
from linkage.config import load_config
from linkage.errors import PublishError
from linkage.publish import current_release, releases, rollback
from tests.conftest import make_demo_project
from tests.test_pipeline import run_steps

READER = textwrap.dedent("""
    import json, os, sys, time
    import duckdb
    current, stop = sys.argv[1], sys.argv[2]
    seen, errors, reads = set(), [], 0
    held = duckdb.connect(current, read_only=True)  # one connection held the whole time
    (held_run,) = held.sql("SELECT max(run_id) FROM runs").fetchall()[0]
    while not os.path.exists(stop):
        try:
            with duckdb.connect(current, read_only=True) as con:  # a new connection each time
                run, records, persons, in_persons = con.sql(
                    "SELECT (SELECT max(run_id) FROM runs), (SELECT count(*) FROM records), "
                    "(SELECT count(*) FROM persons), (SELECT sum(record_count) FROM persons)"
                ).fetchall()[0]
                distinct = con.sql("SELECT count(DISTINCT person_id) FROM records").fetchall()[0][0]
            if records != in_persons or persons != distinct:
                errors.append(f"inconsistent view of {run}")
            seen.add(run)
            reads += 1
        except Exception as e:
            errors.append(repr(e))
        (still,) = held.sql("SELECT max(run_id) FROM runs").fetchall()[0]
        if still != held_run:
            errors.append("the held connection changed release")
        time.sleep(0.05)
    print(json.dumps({"seen": sorted(seen), "errors": errors, "reads": reads}))
""")


def _with_keep(path: Path, keep: int) -> Path:
    doc = yaml.safe_load(path.read_text())
    doc["releases"] = {"keep": keep}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict]:
    """Three published runs with keep=2, while a reader process reads `current` throughout."""
    path = _with_keep(
        make_demo_project(tmp_path_factory.mktemp("rel"), persons=300, seed=4), keep=2
    )
    config = load_config(path)
    first = run_steps(config)
    stop = path.parent / "stop-reading"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(config.paths.index_dir / "current.duckdb"), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    runs = [first.run_id] + [run_steps(config).run_id for _ in range(2)]
    stop.touch()
    out, _ = reader.communicate(timeout=60)
    assert reader.returncode == 0
    return path, runs, json.loads(out)


def test_a_reader_in_another_process_keeps_a_consistent_view_during_publishes(
    three_runs: tuple[Path, list[str], dict],
) -> None:
    _, runs, seen = three_runs
    assert seen["errors"] == []
    assert seen["reads"] > 10
    assert len(seen["seen"]) >= 2  # it picked up new releases on new connections
    assert set(seen["seen"]) <= set(runs)


def test_only_the_newest_releases_are_kept(three_runs: tuple[Path, list[str], dict]) -> None:
    path, runs, _ = three_runs
    index = load_config(path).paths.index_dir
    assert [r.stem for r in releases(index)] == runs[-2:]
    assert current_release(index) == releases(index)[-1]


def test_rollback_switches_back_and_is_audited(three_runs: tuple[Path, list[str], dict]) -> None:
    path, runs, _ = three_runs
    index = load_config(path).paths.index_dir
    linkage = Path(sys.executable).with_name("linkage")
    done = subprocess.run(
        [str(linkage), "rollback", "--config", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert f"current release is now {runs[-2]}" in done.stdout
    assert current_release(index).stem == runs[-2]
    assert os.readlink(index / "current.duckdb") == f"releases/{runs[-2]}.duckdb"
    entry = json.loads((index / "audit" / "releases.jsonl").read_text().splitlines()[-1])
    assert entry["action"] == "rollback" and entry["to"] == runs[-2]
    with pytest.raises(PublishError, match="oldest release kept"):
        rollback(index)
    bad = subprocess.run(
        [str(linkage), "rollback", "--config", str(path), "--to", "nope"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "no release 'nope'" in bad.stderr
    rollback(index, to=runs[-1])  # forward again to the newest
    assert current_release(index).stem == runs[-1]


def test_after_a_rollback_a_repeated_delivery_is_judged_against_the_current_release(
    three_runs: tuple[Path, list[str], dict],
) -> None:
    """The same files again are a no-op against the run that published the current release,
    never against a newer run that was rolled back (whose release is not current)."""
    path, runs, _ = three_runs
    config = load_config(path)
    rollback(config.paths.index_dir, to=runs[-2])
    try:
        run = pipeline.new_run(config)
        intakes = []
        for agency in config.agencies:
            extracted = pipeline.extract(config, agency.name, run)
            assert not isinstance(extracted, str)
            validated = pipeline.validate(config, extracted, run)
            intakes.append(pipeline.standardise(config, extracted, validated, run))
        last = pipeline.same_as_last_published(config, run, intakes)
        pipeline.close_run(config, run)
        assert last is not None and last.run_id == runs[-2]
        assert last.release == str(current_release(config.paths.index_dir))
    finally:
        rollback(config.paths.index_dir, to=runs[-1])
