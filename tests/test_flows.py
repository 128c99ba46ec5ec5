"""Real Prefect flow runs (ephemeral test server) over a small demo project, and the deployment."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from linkage.config import load_config
from linkage.evaluate import evaluate
from linkage.publish import current_release
from linkage.reports.offline import find_external_urls

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def _progress_of(project: str) -> float:
    """The latest value of the project's Prefect progress artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def latest() -> float:
        async with get_client() as client:
            found = await client.read_latest_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{project}-progress"]))
            )
            return float(found[0].data)

    return asyncio.run(latest())


def test_nightly_flow_trains_on_first_run_then_reuses_the_model(
    prefect_server: None, demo_project: Path
) -> None:
    from flows.nightly import nightly

    first = nightly(str(demo_project))
    assert first.trained_this_run
    assert _progress_of("demo") == 100.0  # the run's progress artifact reached the end
    cfg = load_config(demo_project)
    release = current_release(cfg.paths.index_dir)
    assert release is not None and release.name == f"{first.run_id}.duckdb"
    assert os.stat(release).st_mode & 0o777 == 0o444

    with duckdb.connect(str(release), read_only=True) as con:
        delivered = dict(con.sql("SELECT agency, accepted FROM extracts").fetchall())
        published = dict(con.sql("SELECT agency, count(*) FROM records GROUP BY agency").fetchall())
        assert delivered == published and len(published) == 4
        assert con.sql("SELECT count(*) FROM crosswalk").fetchall()[0][0] == first.records

    again = nightly(str(demo_project))  # the same files delivered again: a no-op (C1)
    assert again.status == "unchanged" and again.release == first.release
    assert current_release(cfg.paths.index_dir) == release
    # ... but not once what decides the links changed, nor when a full run is asked for.
    text = demo_project.read_text()
    demo_project.write_text(text.replace("cluster_threshold: 0.7", "cluster_threshold: 0.95"))
    relinked = nightly(str(demo_project))
    assert relinked.status == "published" and relinked.cluster_threshold == 0.95
    demo_project.write_text(text)
    full = nightly(str(demo_project), full=True)
    assert full.status == "published"
    release = current_release(cfg.paths.index_dir)
    assert release is not None

    # A correction (C2): one agency resends a changed file; it replaces, never appends.
    care = demo_project.parent / "data" / "social_care.csv"
    lines = care.read_text().splitlines(keepends=True)
    care.write_text("".join(lines[:-1]))
    second = nightly(str(demo_project))
    assert second.status == "published"
    assert not second.trained_this_run and second.model_version == first.model_version
    release2 = current_release(cfg.paths.index_dir)
    assert release2 is not None and release2 != release and release.exists()  # old one kept
    with duckdb.connect(str(release2), read_only=True) as con:
        runs = con.sql("SELECT run_id, status FROM runs ORDER BY run_id").fetchall()
        assert runs == [
            (first.run_id, "published"), (again.run_id, "unchanged"),
            (relinked.run_id, "published"), (full.run_id, "published"),
            (second.run_id, "published"),
        ]  # fmt: skip
        care_books = con.sql(
            "SELECT delivered FROM extracts WHERE agency = 'social_care' ORDER BY run_id"
        ).fetchall()
        assert care_books[-1][0] == care_books[0][0] - 1
    report = Path(second.report)
    assert report.is_file() and (report.parent / "data-docs" / "index.html").is_file()
    assert (report.parent / "linkage.html").is_file()  # the linkage-quality report
    assert find_external_urls(report.parent) == []
    assert not (cfg.paths.work_dir / second.run_id).exists()  # working files removed
    ev = evaluate(release2, demo_project.parent / "data" / "truth.csv")
    assert ev.pairwise_precision > 0.9 and ev.pairwise_recall > 0.9


def test_train_flow_saves_a_new_version_that_the_nightly_run_then_uses(
    prefect_server: None, demo_project: Path
) -> None:
    from flows.nightly import nightly
    from flows.train import train
    from linkage.model import load_model

    cfg = load_config(demo_project)
    before = load_model(cfg).version
    artefact = train(str(demo_project))
    assert artefact.version != before and load_model(cfg).version == artefact.version
    meta = json.loads((artefact.path / "metadata.json").read_text())
    assert meta["versions"]["splink"] and meta["training_data"]["records"] > 0
    assert nightly(str(demo_project)).model_version == artefact.version


def test_nightly_deployment_exists_with_its_cron_schedule(
    prefect_server: None, demo_project: Path
) -> None:
    from prefect.client.orchestration import get_client

    from flows.deploy import nightly_deployment

    cfg = load_config(demo_project)
    deployment_id = nightly_deployment(cfg).apply()

    async def read() -> tuple[str, list[str], list[str]]:
        async with get_client() as client:
            d = await client.read_deployment(deployment_id)
            return (
                d.name,
                [s.schedule.cron for s in d.schedules],
                [s.schedule.timezone for s in d.schedules],
            )

    name, crons, zones = asyncio.run(read())
    assert name == cfg.project
    assert crons == ["0 2 * * *"] and zones == ["Europe/London"]


def test_a_second_run_exits_75_while_one_holds_the_lock(demo_project: Path) -> None:
    cfg = load_config(demo_project)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from linkage.lock import run_lock\n"
            "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
            str(cfg.paths.index_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        linkage = shutil.which("linkage", path=str(Path(sys.executable).parent))
        assert linkage
        done = subprocess.run(
            [linkage, "run", "--config", str(demo_project)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 75, done.stderr
        assert "another run" in done.stderr and "holds" in done.stderr
    finally:
        holder.kill()


CANARY = "ZQXCANARYWOLFGANG"


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for f in root.rglob("*"):
        if f.is_file() and needle in f.read_bytes():
            hits.append(f)
    return hits


def test_a_planted_name_is_only_in_the_index_and_the_quarantine_store(
    prefect_server: None,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Counts only: no report, log, run record or Prefect store may hold a person's value."""
    import polars as pl

    from flows.nightly import nightly
    from linkage.demo.project import write_demo_project

    path = write_demo_project(tmp_path, persons=600, seed=13)
    csv_path = tmp_path / "data" / "nhs_trust.csv"
    df = pl.read_csv(csv_path, infer_schema=False)
    df = df.with_columns(
        forename=pl.when(pl.int_range(pl.len()) < 2).then(pl.lit(CANARY)).otherwise("forename"),
        # The second planted row breaks the contract's id pattern: it goes to quarantine.
        patient_id=pl.when(pl.int_range(pl.len()) == 1)
        .then(pl.lit("BAD-ID"))
        .otherwise("patient_id"),
    )
    df.write_csv(csv_path)
    caplog.set_level("DEBUG")
    record = nightly(str(path))
    cfg = load_config(path)
    needle = CANARY.encode()

    with duckdb.connect(record.release, read_only=True) as con:
        hits = con.execute("SELECT count(*) FROM records WHERE given_name = ?", [CANARY])
        assert hits.fetchall()[0][0] == 1
    quarantine = cfg.paths.quarantine_dir / record.run_id / "nhs_trust.quarantine.parquet"
    assert quarantine.is_file() and oct(quarantine.parent.stat().st_mode & 0o777) == "0o700"
    assert pl.read_parquet(quarantine)["raw"].str.contains(CANARY).sum() == 1

    assert _files_holding(cfg.paths.reports_dir, needle) == []
    assert _files_holding(cfg.paths.index_dir / "runs", needle) == []
    assert _files_holding(Path(os.environ["PREFECT_HOME"]), needle) == []
    assert not cfg.paths.work_dir.exists() or _files_holding(cfg.paths.work_dir, needle) == []
    assert CANARY not in caplog.text
    out, err = capfd.readouterr()
    assert CANARY not in out and CANARY not in err
