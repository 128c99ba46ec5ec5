"""The train flow: extract and standardise every agency, then train and save a new model version."""

from __future__ import annotations

from pathlib import Path

from flows.env import apply_offline_defaults

apply_offline_defaults()

from prefect import flow, task  # noqa: E402

from flows.nightly import intake  # noqa: E402
from linkage import pipeline  # noqa: E402
from linkage.config import load_config  # noqa: E402
from linkage.lock import run_lock  # noqa: E402
from linkage.model import ModelArtefact  # noqa: E402

train_model = task(name="train model")(pipeline.train)


@flow(name="train")
def train(config_path: str | None = None) -> ModelArtefact:
    """Train the model on the current extracts; the nightly flow picks up the newest version."""
    config = load_config(Path(config_path) if config_path else None)
    with run_lock(config.paths.index_dir):
        run = pipeline.new_run(config)
        paths = [i.standardised for i in intake(config, run) if i.standardised is not None]
        artefact = train_model(config, paths, run)
        pipeline.close_run(config, run)
        return artefact
