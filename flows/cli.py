"""Console entry point: the library commands plus those that start Prefect flows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from flows.env import apply_offline_defaults
from linkage.cli import ConfigOpt, app, config_from, hand_logging_to_prefect
from linkage.cli import main as _main

apply_offline_defaults()


@app.command()
def run(
    config: ConfigOpt = None,
    override: Annotated[
        str | None,
        typer.Option(
            help="Publish even if gates fail: who approved it and why (recorded with the run)."
        ),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Score every record, not only what changed.")
    ] = False,
) -> None:
    """Run the nightly linkage now (generates the demo extracts first when they are missing)."""
    hand_logging_to_prefect()
    from flows.nightly import nightly
    from linkage.config import DEMO_CONFIG
    from linkage.pipeline import format_summary

    cfg = config_from(config)
    if Path(cfg.config_path) == DEMO_CONFIG.resolve():
        missing = [a for a in cfg.agencies if not Path(a.source.path).exists()]  # type: ignore[union-attr]
        if missing:
            from linkage.cli import DEMO_PERSONS, DEMO_SEED, demo_data

            typer.echo("demo extracts not found: generating them (linkage demo-data)")
            demo_data(persons=DEMO_PERSONS, seed=DEMO_SEED, profile="default", out=None)
    record = nightly(str(cfg.config_path), override=override, full=full)
    typer.echo(format_summary(record))


@app.command()
def train(config: ConfigOpt = None) -> None:
    """Train a new model version on the current extracts (the nightly run uses the newest)."""
    hand_logging_to_prefect()
    from flows.train import train as train_flow

    cfg = config_from(config)
    artefact = train_flow(str(cfg.config_path))
    typer.echo(f"trained model {artefact.version}: {artefact.path}")


@app.command()
def schedule(
    config: ConfigOpt = None,
    start_server: Annotated[
        bool, typer.Option(help="Start a local Prefect server unless PREFECT_API_URL is set.")
    ] = True,
) -> None:
    """Serve the nightly flow on the project's cron schedule (Ctrl-C stops it)."""
    cfg = config_from(config)
    server = None
    if start_server and not os.environ.get("PREFECT_API_URL"):
        port = os.environ.get("LINKAGE_PREFECT_PORT", "4200")
        prefect = shutil.which("prefect") or str(Path(sys.executable).with_name("prefect"))
        server = subprocess.Popen(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", port]
        )
        os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
        _wait_for(f"http://127.0.0.1:{port}/api/health")
        typer.echo(f"Prefect server and UI: http://127.0.0.1:{port}")
    # Imported only now: Prefect reads PREFECT_API_URL when it is first imported.
    from prefect import serve

    from flows.deploy import nightly_deployment

    try:
        deployment = nightly_deployment(cfg)
        typer.echo(
            f"serving 'nightly/{deployment.name}' on cron {cfg.schedule.cron} "
            f"({cfg.schedule.timezone})"
        )
        serve(deployment)
    finally:
        if server is not None:
            server.terminate()


def _wait_for(url: str, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"Prefect server did not answer at {url} within {timeout:.0f}s")


def main() -> None:
    _main(app)


if __name__ == "__main__":
    main()
