"""The steps of a run as plain functions with explicit inputs; ``flows/`` wraps each in a task.

Each step writes its output under the run's folder and returns a small typed result (paths and
counts, never person rows), so the orchestrator only ever passes those around.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from linkage.config import ProjectConfig
from linkage.contracts import load_contract
from linkage.db import connect
from linkage.errors import ModelError
from linkage.link import LinkResult, load_records, predict_and_cluster
from linkage.model import ModelArtefact, load_model, train_model
from linkage.publish import ExtractSummary, PublishResult, RunRecord, publish
from linkage.sources import ExtractResult, read_extract
from linkage.standardise import StandardiseResult, standardise_extract

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    run_id: str
    started_at: datetime
    run_dir: Path


def new_run(config: ProjectConfig) -> RunContext:
    """Create the run's private working folder (0700: it holds person records)."""
    started = datetime.now(UTC)
    run_id = started.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
    run_dir = config.paths.work_dir / run_id
    run_dir.mkdir(parents=True, mode=0o700)
    os.chmod(config.paths.work_dir, 0o700)
    return RunContext(run_id, started, run_dir)


def extract(config: ProjectConfig, agency: str, run: RunContext) -> ExtractResult:
    """Read one agency's extract against its contract into ``<run>/extracts/``."""
    spec = config.agency(agency)
    contract = load_contract(spec.contract)
    out = run.run_dir / "extracts"
    out.mkdir(exist_ok=True, mode=0o700)
    return read_extract(spec, contract, out)


def standardise(
    config: ProjectConfig, agency: str, extracted: ExtractResult, run: RunContext
) -> StandardiseResult:
    """Map the accepted rows to the canonical record in ``<run>/standardised/<agency>.parquet``."""
    out = run.run_dir / "standardised"
    out.mkdir(exist_ok=True, mode=0o700)
    return standardise_extract(
        extracted.accepted_path,
        config.agency(agency),
        config.identifiers,
        out / f"{agency}.parquet",
    )


def train(
    config: ProjectConfig, standardised: list[StandardiseResult], run: RunContext
) -> ModelArtefact:
    """Train a new model version on the standardised records of this run."""
    con = connect(run.run_dir / "train.duckdb", config)
    try:
        load_records(con, [s.path for s in standardised])
        return train_model(con, "records", config)
    finally:
        con.close()


def model_for_run(
    config: ProjectConfig, standardised: list[StandardiseResult], run: RunContext
) -> tuple[ModelArtefact, bool]:
    """The saved model, or, on a project's first run only, a newly trained one (and True)."""
    try:
        return load_model(config), False
    except ModelError:
        if config.model.version:
            raise
        log.warning("no trained model in %s: training one now (first run)", config.model.dir)
        return train(config, standardised, run), True


def link(
    config: ProjectConfig,
    model: ModelArtefact,
    standardised: list[StandardiseResult],
    run: RunContext,
) -> LinkResult:
    """Predict and cluster into the run's work database."""
    work_db = run.run_dir / "work.duckdb"
    con = connect(work_db, config)
    try:
        load_records(con, [s.path for s in standardised])
        return predict_and_cluster(
            con,
            model,
            predict_threshold=config.model.predict_threshold,
            cluster_threshold=config.model.cluster_threshold,
            work_db=work_db,
        )
    finally:
        con.close()


def publish_run(
    config: ProjectConfig,
    run: RunContext,
    model: ModelArtefact,
    trained: bool,
    extracts: list[ExtractResult],
    standardised: list[StandardiseResult],
    linked: LinkResult,
) -> PublishResult:
    """Check the books and publish the release atomically."""
    summaries = tuple(
        ExtractSummary(
            agency=e.agency,
            source=e.source,
            sha256=e.sha256,
            delivered=e.delivered,
            accepted=e.accepted,
            quarantined=e.quarantined,
            blank_lines=e.blank_lines,
            duplicates=e.duplicates,
            standardised=s.rows,
            flags=dict(s.flags),
        )
        for e, s in zip(extracts, standardised, strict=True)
    )
    record = RunRecord(
        run_id=run.run_id,
        started_at=run.started_at,
        config_path=str(config.config_path),
        model_version=model.version,
        trained_this_run=trained,
        cluster_threshold=config.model.cluster_threshold,
        extracts=summaries,
    )
    con = connect(linked.work_db, config)
    try:
        return publish(con, config.paths.index_dir, record, datetime.now(UTC))
    finally:
        con.close()


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    model_version: str
    trained_this_run: bool
    extracts: list[dict[str, object]]
    records: int
    persons: int
    links: int
    largest_person: int
    release: str
    current: str
    summary_path: str


def write_summary(
    config: ProjectConfig,
    run: RunContext,
    model: ModelArtefact,
    trained: bool,
    extracts: list[ExtractResult],
    linked: LinkResult,
    published: PublishResult,
) -> RunSummary:
    """Write the run summary (counts only) as JSON under ``reports_dir/<run_id>/``."""
    out = config.paths.reports_dir / run.run_id
    out.mkdir(parents=True, exist_ok=True)
    summary = RunSummary(
        run_id=run.run_id,
        model_version=model.version,
        trained_this_run=trained,
        extracts=[
            {k: v for k, v in asdict(e).items() if k not in ("accepted_path", "quarantine_path")}
            for e in extracts
        ],
        records=published.records,
        persons=published.persons,
        links=published.links,
        largest_person=linked.largest_person,
        release=str(published.release_path),
        current=str(published.current_path),
        summary_path=str(out / "summary.json"),
    )
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2, default=str) + "\n")
    return summary


def _command() -> str:
    """How to call `linkage` from here: the venv's script, relative to the working folder."""
    script = Path(sys.executable).with_name("linkage")
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return "linkage"


def format_summary(s: RunSummary) -> str:
    """What a person reads at the end of a run."""
    lines = [f"Run {s.run_id} published.", ""]
    lines.append(
        f"{'agency':<16}{'delivered':>10}{'accepted':>10}{'quarantined':>12}{'blank':>7}{'dupes':>7}"
    )
    for e in s.extracts:
        lines.append(
            f"{e['agency']!s:<16}{e['delivered']:>10}{e['accepted']:>10}{e['quarantined']:>12}"
            f"{e['blank_lines']:>7}{e['duplicates']:>7}"
        )
    model = f"{s.model_version} (trained in this run)" if s.trained_this_run else s.model_version
    lines += [
        "",
        f"records linked: {s.records}   persons: {s.persons}   links: {s.links}   "
        f"largest person: {s.largest_person} records",
        f"model:          {model}",
        f"index:          {s.current} -> {s.release}",
        f"run summary:    {s.summary_path}",
        "",
        'Try:  linkage sql "SELECT agency_count, count(*) AS persons FROM persons '
        'GROUP BY ALL ORDER BY 1"',
    ]
    return "\n".join(lines)
