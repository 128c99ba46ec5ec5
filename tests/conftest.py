"""Shared set-up: Prefect gets a private, throw-away home and the offline settings before import."""

from __future__ import annotations

import os
import tempfile

_PREFECT_HOME = tempfile.mkdtemp(prefix="linkage-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.pop("PREFECT_API_URL", None)

from flows.env import apply_offline_defaults  # noqa: E402

apply_offline_defaults()


from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

from linkage.config import DEMO_CONFIG  # noqa: E402


def make_demo_project(root: Path, *, persons: int, seed: int) -> Path:
    """The demo config with its extracts (generated) and outputs in ``root``; returns its path."""
    from linkage.demo.generate import generate_demo

    data = root / "data"
    generate_demo(data, persons=persons, seed=seed)
    doc = yaml.safe_load(DEMO_CONFIG.read_text())
    doc["paths"] = {k: str(root / "out" / k) for k in ("index_dir", "work_dir", "reports_dir")}
    doc["duckdb"]["temp_directory"] = str(root / "out" / "tmp")
    doc["model"]["dir"] = str(root / "out" / "models")
    for a in doc["agencies"]:
        a["contract"] = str((DEMO_CONFIG.parent / a["contract"]).resolve())
        a["source"]["path"] = str(data / Path(a["source"]["path"]).name)
    path = root / "linkage.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo project of 1,500 persons, shared by the tests that only read it."""
    return make_demo_project(tmp_path_factory.mktemp("demo"), persons=1_500, seed=7)
