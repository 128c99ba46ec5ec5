"""The project config: valid files load; bad ones report every problem with key, line and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkage.config import DEMO_CONFIG, load_config
from linkage.errors import ConfigError

BASE = """
project: t
paths: {index_dir: out/index, work_dir: out/work, reports_dir: out/reports, quarantine_dir: out/q}
duckdb: {temp_directory: out/tmp}
model: {dir: out/models}
identifiers:
  nhs_number: {validation: nhs_number}
agencies:
  - name: a
    contract: a.yaml
    source: {kind: csv, path: a.csv}
    mapping:
      source_record_id: id
      identifiers: {nhs_number: nhs}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "linkage.yaml"
    p.write_text(text)
    return p


def test_demo_config_loads_with_four_agencies() -> None:
    cfg = load_config()
    assert cfg.config_path == DEMO_CONFIG.resolve()
    assert [a.name for a in cfg.agencies] == ["nhs_trust", "social_care", "police", "probation"]
    assert {a.source.kind for a in cfg.agencies} == {"csv", "parquet"}


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.paths.index_dir == tmp_path / "out" / "index"
    assert cfg.agencies[0].contract == tmp_path / "a.yaml"
    assert cfg.agencies[0].source.path == tmp_path / "a.csv"


def test_every_problem_is_reported_with_key_and_line(tmp_path: Path) -> None:
    text = BASE.replace("kind: csv, path: a.csv", "kind: csv, path: a.csv, delimiter: ';;'")
    text = text.replace(
        "model: {dir: out/models}", "model: {dir: out/models, cluster_threshold: 2}"
    )
    text = text.replace("project: t", "project: t\nprojct: typo")
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    msg = str(err.value)
    assert str(tmp_path / "linkage.yaml") in msg
    assert len(err.value.problems) == 3
    assert "`projct`: unknown key" in msg and "line 3" in msg
    assert "`model.cluster_threshold`" in msg
    assert "`agencies.0.source.delimiter`: must be a single character, got ';;'" in msg


def test_missing_required_key_says_to_add_it(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"`agencies.0.mapping.source_record_id`: required key is missing"
    ):
        load_config(write(tmp_path, BASE.replace("source_record_id: id", "given_name: fn")))


def test_undeclared_identifier_scheme_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not declared under `identifiers:`"):
        load_config(write(tmp_path, BASE.replace("{nhs_number: nhs}", "{ni_number: ni}")))


def test_database_source_needs_table_or_query(tmp_path: Path) -> None:
    text = BASE.replace("{kind: csv, path: a.csv}", "{kind: database, dsn_env: DSN}")
    with pytest.raises(ConfigError, match="exactly one of `table` or `query`"):
        load_config(write(tmp_path, text))


def test_unreadable_and_non_yaml_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "project: [unclosed"))


def test_bad_cron_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="5-field cron"):
        load_config(write(tmp_path, BASE + "schedule: {cron: 'every night'}\n"))
