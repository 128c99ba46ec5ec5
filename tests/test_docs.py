"""Documentation that is generated from code stays in step with it."""

from __future__ import annotations

from pathlib import Path

from schemas.canonical import CANONICAL_FIELDS, render_markdown
from schemas.dictionary import render_data_dictionary

ROOT = Path(__file__).resolve().parents[1]


def test_canonical_record_doc_matches_the_schema() -> None:
    doc = (ROOT / "docs" / "canonical-record.md").read_text()
    assert doc == render_markdown(), "run `make docs` and commit docs/canonical-record.md"
    assert all(f"`{f.name}`" in doc for f in CANONICAL_FIELDS)


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make run" in readme
    assert "\nmake test\n" in (ROOT / ".ci" / "run").read_text()


def test_data_dictionary_matches_the_index_contract() -> None:
    doc = (ROOT / "docs" / "data-dictionary.md").read_text()
    assert doc == render_data_dictionary(), "run `make docs` and commit docs/data-dictionary.md"
    for table in ("records", "persons", "crosswalk", "links", "lineage", "runs", "extracts"):
        assert f"## `{table}`" in doc
