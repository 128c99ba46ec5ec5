"""A self-contained demo project in any folder: generated extracts and a config for them."""

from __future__ import annotations

from pathlib import Path

import yaml

from linkage.config import DEMO_CONFIG
from linkage.demo.generate import generate_demo


def write_demo_project(root: Path, *, persons: int, seed: int, profile: str = "default") -> Path:
    """Generate the demo extracts in ``root/data`` and write ``root/linkage.yaml`` for them.

    The config is the built-in demo's, with its outputs under ``root/out`` and its contracts taken
    from the repository. Returns the config's path.
    """
    data = root / "data"
    generate_demo(data, persons=persons, seed=seed, profile=profile)
    doc = yaml.safe_load(DEMO_CONFIG.read_text())
    doc["paths"] = {
        k: str(root / "out" / k) for k in ("index_dir", "work_dir", "reports_dir", "quarantine_dir")
    }
    doc["duckdb"]["temp_directory"] = str(root / "out" / "tmp")
    doc["model"]["dir"] = str(root / "out" / "models")
    doc["analyst_release"]["key_file"] = str(root / "out" / "secrets" / "pseudonym.key")
    for agency in doc["agencies"]:
        agency["contract"] = str((DEMO_CONFIG.parent / agency["contract"]).resolve())
        agency["source"]["path"] = str(data / Path(agency["source"]["path"]).name)
    path = root / "linkage.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_example_project(example: Path, root: Path) -> Path:
    """A copy of the config of ``example`` (a folder of ``examples/``) with its outputs in
    ``root`` and its contracts and sources read from ``example``. Returns the config's path."""
    doc = yaml.safe_load((example / "linkage.yaml").read_text())
    doc["paths"] = {k: str(root / k) for k in doc["paths"]}
    doc["duckdb"]["temp_directory"] = str(root / "tmp")
    doc["model"]["dir"] = str(root / "models")
    for agency in doc["agencies"]:
        agency["contract"] = str(example / agency["contract"])
        agency["source"]["path"] = str(example / agency["source"]["path"])
    path = root / "linkage.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
