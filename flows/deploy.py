"""The nightly deployment: the nightly flow on the project's cron schedule."""

from __future__ import annotations

from flows.env import apply_offline_defaults

apply_offline_defaults()

from prefect.deployments.runner import RunnerDeployment  # noqa: E402
from prefect.schedules import Cron  # noqa: E402

from flows.nightly import nightly  # noqa: E402
from linkage.config import ProjectConfig  # noqa: E402


def nightly_deployment(config: ProjectConfig) -> RunnerDeployment:
    """A deployment named after the project, running the nightly flow on its schedule."""
    deployment = nightly.to_deployment(
        name=config.project,
        schedule=Cron(config.schedule.cron, timezone=config.schedule.timezone),
        parameters={"config_path": str(config.config_path)},
        description=f"Nightly linkage for project {config.project}",
    )
    assert isinstance(deployment, RunnerDeployment)  # synchronous call: not a coroutine
    return deployment
