"""``docs/data-dictionary.md``: the published index's tables, generated from its ODCS contract
(``data_contracts/master_index.yaml``), which a test checks against a real release."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONTRACT = Path(__file__).resolve().parents[1] / "data_contracts" / "master_index.yaml"
_PII = {"direct_identifier": "direct", "quasi_identifier": "quasi", "other": "no"}


def _props(node: dict[str, Any]) -> dict[str, str]:
    return {c["property"]: str(c["value"]) for c in node.get("customProperties", [])}


def render_data_dictionary(contract: Path = CONTRACT) -> str:
    doc = yaml.safe_load(contract.read_text())
    lines = [
        "# Data dictionary of the published index",
        "",
        "<!-- Generated from data_contracts/master_index.yaml by `make docs`; do not edit. -->",
        "",
        doc["description"]["purpose"],
        f"{doc['description']['usage']} {doc['description'].get('limitations', '')}".strip(),
        "",
        "Personal data: **direct** = direct identifier, **quasi** = quasi-identifier, "
        "**no** = not personal. How rows come about (survivorship, clustering, stable IDs): "
        "[index-tables.md](index-tables.md).",
    ]
    for table in doc["schema"]:
        kind = "view" if table["physicalType"] == "view" else "table"
        lines += ["", f"## `{table['physicalName']}` ({kind})", "", table["description"], ""]
        lines += ["| column | type | personal | meaning |", "| --- | --- | --- | --- |"]
        for p in table["properties"]:
            pii = _PII[_props(p).get("piiClass", "other")]
            key = " (key)" if p.get("primaryKey") else ""
            lines.append(f"| {p['name']}{key} | {p['physicalType']} | {pii} | {p['description']} |")
        pattern = _props(table).get("additionalColumnsPattern")
        if pattern:
            lines += ["", f"Further columns match `{pattern}` (one set per model comparison)."]
    return "\n".join(lines) + "\n"
