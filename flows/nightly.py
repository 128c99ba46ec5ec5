"""The nightly linkage flow: a task per step of ``linkage.pipeline``, passing paths and counts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import cast
from uuid import UUID

from flows.env import apply_offline_defaults

apply_offline_defaults()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import (  # noqa: E402
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from linkage import pipeline, runlog  # noqa: E402
from linkage.config import ProjectConfig, load_config  # noqa: E402
from linkage.gates import blocking  # noqa: E402
from linkage.lock import run_lock  # noqa: E402
from linkage.runlog import RunRecord  # noqa: E402
from linkage.sources import TransientSourceError  # noqa: E402


def _transient(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's callback signature
    """Retry only failures that may pass (a dropped connection), never bad data."""
    try:
        state.result()
    except TransientSourceError:
        return True
    except Exception:
        return False
    return False


extract = task(
    name="extract", retries=3, retry_delay_seconds=[10, 60, 300], retry_condition_fn=_transient
)(pipeline.extract)
validate = task(name="validate")(pipeline.validate)
standardise = task(name="standardise")(pipeline.standardise)
check_gates = task(name="gates")(pipeline.check)
carry_forward = task(name="carry forward")(pipeline.carry_forward)
model_for_run = task(name="load model")(pipeline.model_for_run)
link = task(name="predict and cluster")(pipeline.link)
publish = task(name="publish")(pipeline.publish_run)
report = task(name="report")(pipeline.report)


class Progress:
    """How far the run is: a log line per step (the command line) and a Prefect progress
    artifact (the UI). Steps are weighted by their usual share of a run's time."""

    WEIGHTS = {"intake": 40, "gates": 1, "model": 4, "link": 35, "publish": 15, "report": 5}

    def __init__(self, config: ProjectConfig) -> None:
        self.done = 0.0
        self.logger = get_run_logger()
        self.artifact = cast(
            UUID,
            create_progress_artifact(
                0.0,
                key=f"{config.project.replace('_', '-')}-progress",
                description=f"Nightly run of {config.project}",
            ),
        )

    def start(self, step: str, detail: str = "") -> None:
        self.logger.info("[%3.0f%%] %s%s", self.done, step, f": {detail}" if detail else "")

    def finish(self, step: str, share: float = 1.0) -> None:
        self.done = min(100.0, self.done + self.WEIGHTS[step] * share)
        update_progress_artifact(self.artifact, self.done)


def intake(
    config: ProjectConfig, run: pipeline.RunContext, progress: Progress | None = None
) -> list[pipeline.Intake]:
    """Extract, validate and standardise each agency (a refused delivery is recorded, not fatal)."""
    intakes = []
    for n, agency in enumerate(config.agencies, 1):
        if progress:
            progress.start("intake", f"{agency.name} ({n}/{len(config.agencies)})")
        extracted = extract(config, agency.name, run)
        if isinstance(extracted, str):
            intakes.append(pipeline.rejected_intake(agency.name, extracted))
            continue
        validated = validate(config, extracted, run)
        intakes.append(standardise(config, extracted, validated, run))
        if progress:
            progress.finish("intake", 1 / len(config.agencies))
    return intakes


def artifacts(config: ProjectConfig, record: RunRecord) -> None:
    """Headline figures per agency in the Prefect UI: counts only."""
    key = config.project.replace("_", "-")
    for e in record.extracts:
        create_table_artifact(
            key=f"{key}-{e.agency.replace('_', '-')}-books",
            table=[
                {"measure": k, "value": v}
                for k, v in [
                    ("delivered", e.delivered), ("accepted", e.accepted),
                    ("quarantined", e.quarantined), ("blank lines", e.blank_lines),
                    ("exact duplicates", e.duplicates), ("standardised", e.standardised),
                    ("rejected", e.rejected or "no"),
                ]
            ],
            description=f"{e.agency}: where every delivered row went in run {record.run_id}",
        )  # fmt: skip
    create_markdown_artifact(
        key=f"{key}-run-summary",
        markdown=f"```\n{pipeline.format_summary(record)}\n```",
        description="Books per agency, gates and linkage totals (no personal data).",
    )


@flow(name="nightly", log_prints=False)
def nightly(
    config_path: str | None = None, override: str | None = None, full: bool = False
) -> RunRecord:
    """Extract every agency, check, standardise, link with the saved model, cluster and publish.

    ``override`` (who approved it and why) publishes despite failed gates; it is recorded.
    ``full`` scores every record even when only a few changed since the current release.
    """
    config = load_config(Path(config_path) if config_path else None)
    logger = get_run_logger()
    with run_lock(config.paths.index_dir):
        run = pipeline.new_run(config, full)
        logger.info("run %s for project %s", run.run_id, config.project)
        progress = Progress(config)
        intakes = intake(config, run, progress)
        if (last := pipeline.same_as_last_published(config, run, intakes)) is not None:
            logger.info("every extract is identical to run %s's: nothing to do", last.run_id)
            unchanged = pipeline.record(config, run, intakes, [], status="unchanged")
            unchanged = replace(unchanged, release=last.release, report=None)
            runlog.save(config.paths.index_dir, unchanged)
            pipeline.close_run(config, run)
            return unchanged
        progress.start("gates")
        gates = check_gates(config, intakes)
        progress.finish("gates")
        failed = blocking(gates)
        if failed and not override:
            blocked = pipeline.record(config, run, intakes, gates, status="blocked")
            report(config, blocked, intakes)
            artifacts(config, blocked)
            pipeline.close_run(config, run)
            pipeline.block(config, blocked)
        if failed:
            logger.warning("publishing despite failed gates, override: %s", override)
            intakes = [
                carry_forward(config, i, run) if i.standardised is None else i for i in intakes
            ]
        paths = [i.standardised for i in intakes if i.standardised is not None]
        progress.start("model")
        model, trained = model_for_run(config, paths, run)
        if trained:
            logger.warning("no saved model: trained %s in this run", model.version)
        progress.finish("model")
        progress.start("link", "blocking check, predict, cluster")
        linked = link(config, model, paths, run)
        progress.finish("link")
        record = pipeline.record(
            config, run, intakes, gates, status="published",
            override=override if failed else None, model=model, trained=trained, linked=linked,
        )  # fmt: skip
        progress.start("publish")
        published = publish(config, record, linked)
        progress.finish("publish")
        progress.start("report")
        report(config, published, intakes)
        progress.finish("report")
        pipeline.close_run(config, run)
    artifacts(config, published)
    return published
