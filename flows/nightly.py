"""The nightly linkage flow: a task per step of ``linkage.pipeline``, passing paths and counts."""

from __future__ import annotations

from pathlib import Path

from flows.env import apply_offline_defaults

apply_offline_defaults()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

from linkage import pipeline  # noqa: E402
from linkage.config import load_config  # noqa: E402
from linkage.lock import run_lock  # noqa: E402
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
standardise = task(name="standardise")(pipeline.standardise)
model_for_run = task(name="load model")(pipeline.model_for_run)
link = task(name="predict and cluster")(pipeline.link)
publish = task(name="publish")(pipeline.publish_run)
summarise = task(name="summary")(pipeline.write_summary)


@flow(name="nightly", log_prints=False)
def nightly(config_path: str | None = None) -> pipeline.RunSummary:
    """Extract every agency, standardise, link with the saved model, cluster and publish."""
    config = load_config(Path(config_path) if config_path else None)
    logger = get_run_logger()
    with run_lock(config.paths.index_dir):
        run = pipeline.new_run(config)
        logger.info("run %s for project %s", run.run_id, config.project)
        extracts, standardised = [], []
        for agency in config.agencies:
            e = extract(config, agency.name, run)
            extracts.append(e)
            standardised.append(standardise(config, agency.name, e, run))
        model, trained = model_for_run(config, standardised, run)
        if trained:
            logger.warning("no saved model: trained %s in this run", model.version)
        linked = link(config, model, standardised, run)
        published = publish(config, run, model, trained, extracts, standardised, linked)
        summary = summarise(config, run, model, trained, extracts, linked, published)
    create_markdown_artifact(
        key=f"{config.project}-run-summary".replace("_", "-"),
        markdown=f"```\n{pipeline.format_summary(summary)}\n```",
        description="Counts per agency and linkage totals (no personal data).",
    )
    return summary
