"""Open Data Contract Standard (ODCS v3.1) contracts: loading and checking against the standard.

A contract describes one agency extract: its columns (``schema[0].properties``) in delivery order,
their types, which are required and unique, and each column's personal-data class in
``customProperties`` (``piiClass``: direct_identifier, quasi_identifier or other).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from linkage.errors import ContractError


@dataclass(frozen=True)
class Column:
    name: str
    logical_type: str
    required: bool
    unique: bool
    pii_class: str


@dataclass(frozen=True)
class Contract:
    path: Path
    id: str
    version: str
    table: str
    columns: tuple[Column, ...]
    custom: dict[str, Any]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


@cache
def _odcs_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(files("open_data_contract_standard").joinpath("schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def _custom(props: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {p["property"]: p.get("value") for p in props or [] if "property" in p}


def load_contract(path: Path) -> Contract:
    """Load a contract and check it against the ODCS JSON schema, reporting every problem.

    Raises:
        ContractError: naming the file, the path in the YAML of each problem and the fix.
    """
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ContractError(str(path), [f"cannot read the file: {e.strerror}"]) from e
    except yaml.YAMLError as e:
        raise ContractError(str(path), [f"not valid YAML: {e}"]) from e
    if not isinstance(doc, dict):
        raise ContractError(str(path), ["the file must be a YAML mapping (an ODCS contract)"])
    problems = [
        f"`{'.'.join(str(p) for p in err.absolute_path) or '(top level)'}`: {err.message} "
        "(see the ODCS v3.1 specification)"
        for err in sorted(_odcs_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]
    schema = doc.get("schema") or []
    if not problems and (not schema or not schema[0].get("properties")):
        problems.append("`schema[0].properties`: the contract lists no columns; list them in order")
    if problems:
        raise ContractError(str(path), problems)
    table = schema[0]
    columns = tuple(
        Column(
            name=p["name"],
            logical_type=p.get("logicalType", "string"),
            required=bool(p.get("required", False)),
            unique=bool(p.get("unique", False)),
            pii_class=_custom(p.get("customProperties")).get("piiClass", "other"),
        )
        for p in table["properties"]
    )
    return Contract(
        path=path,
        id=doc["id"],
        version=str(doc["version"]),
        table=table["name"],
        columns=columns,
        custom=_custom(doc.get("customProperties")),
    )
