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

from linkage.demo.project import write_demo_project  # noqa: E402


def make_demo_project(root: Path, *, persons: int, seed: int) -> Path:
    """The demo config with its generated extracts and its outputs in ``root``."""
    return write_demo_project(root, persons=persons, seed=seed)


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo project of 1,500 persons, shared by the tests that only read it."""
    return make_demo_project(tmp_path_factory.mktemp("demo"), persons=1_500, seed=7)
