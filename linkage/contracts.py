"""Open Data Contract Standard (ODCS v3.1) contracts: loading and checking against the standard.

A contract describes one agency extract: its columns (``schema[0].properties``) in delivery order,
their types, which are required and unique, and each column's personal-data class in
``customProperties`` (``piiClass``: direct_identifier, quasi_identifier or other).

It also states rules, which `load_contract` parses into typed objects (compiled to Great
Expectations by ``linkage.validate``):

- row rules (`RowRule`): what every deliverable row looks like; a row breaking one is
  quarantined. From ``required``, ``unique``, ``logicalTypeOptions`` (``pattern``, ``minLength``,
  ``maxLength``, a date ``format`` such as ``yyyy-MM-dd``), ``enum``, and property-level
  ``quality`` rules that allow no bad row (``mustBe: 0``): ``nullValues``, ``duplicateValues``,
  ``invalidValues`` with ``arguments.pattern`` or ``arguments.validValues``.
- table rules (`TableRule`): about the extract as a whole, never about one row: schema-level
  ``rowCount`` and property-level ``nullValues`` in ``percent``.
- anything else the contract states (``sql`` or ``custom`` rules, other metrics or thresholds) is
  listed in ``Contract.unchecked_rules``; ``linkage.validate`` refuses to run while any remain, so
  no stated rule goes unchecked silently. ``text`` rules are documentation and are skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar

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


# --- rules ----------------------------------------------------------------------------------------
# Each rule has a short ``rule`` name used in quarantine reasons (``"<rule>:<column>"``) and
# ``where``, its place in the contract (for messages; not part of equality, so that ``unique: true``
# and a ``duplicateValues`` rule on the same column are one rule).


@dataclass(frozen=True)
class Required:
    """The column must hold a value (an empty string counts as missing)."""

    rule: ClassVar[str] = "required"
    column: str
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class Unique:
    """No two rows may share a (non-missing) value; every row sharing one is quarantined."""

    rule: ClassVar[str] = "unique"
    column: str
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class Pattern:
    """A present value must match ``regex`` (searched, so contracts anchor it with ``^...$``)."""

    rule: ClassVar[str] = "pattern"
    column: str
    regex: str
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class MaxLength:
    """A present value must be at most ``limit`` characters long."""

    rule: ClassVar[str] = "max_length"
    column: str
    limit: int
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class MinLength:
    """A present value must be at least ``limit`` characters long."""

    rule: ClassVar[str] = "min_length"
    column: str
    limit: int
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class AllowedValues:
    """A present value must be one of ``values`` (compared as text)."""

    rule: ClassVar[str] = "allowed_values"
    column: str
    values: tuple[str, ...]
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class DateFormat:
    """A present value must be a real date or time in the contract's format.

    ``format`` is the contract's (JDK DateTimeFormatter style, e.g. ``yyyy-MM-dd``); ``strftime``
    is the same format for Python (``%Y-%m-%d``).
    """

    rule: ClassVar[str] = "date_format"
    column: str
    format: str
    strftime: str
    where: str = field(default="", compare=False)


RowRule = Required | Unique | Pattern | MaxLength | MinLength | AllowedValues | DateFormat
"""A rule every row must meet; a row breaking it is quarantined."""


@dataclass(frozen=True)
class RowCount:
    """The extract's number of rows must lie within the bounds (``None``: unbounded)."""

    rule: ClassVar[str] = "row_count"
    min_value: float | None = None
    max_value: float | None = None
    strict_min: bool = False
    strict_max: bool = False
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class NullShare:
    """At most ``max_percent`` of the column's values may be missing (strictly less if strict)."""

    rule: ClassVar[str] = "null_share"
    column: str
    max_percent: float
    strict: bool = False
    where: str = field(default="", compare=False)


TableRule = RowCount | NullShare
"""A rule about the extract as a whole: breaking it quarantines no row but fails the check."""


@dataclass(frozen=True)
class Contract:
    path: Path
    id: str
    version: str
    table: str
    columns: tuple[Column, ...]
    custom: dict[str, Any]
    row_rules: tuple[RowRule, ...] = ()
    table_rules: tuple[TableRule, ...] = ()
    unchecked_rules: tuple[str, ...] = ()
    """Rules the contract states that no code here checks, each as "<where>: <why>"."""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def quarantine_threshold(self) -> float | None:
        """The share of rows above which the extract is refused (``quarantineThreshold``)."""
        value = self.custom.get("quarantineThreshold")
        return None if value is None else float(value)


@cache
def _odcs_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(files("open_data_contract_standard").joinpath("schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def _custom(props: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {p["property"]: p.get("value") for p in props or [] if "property" in p}


# --- parsing the rules ----------------------------------------------------------------------------

_DATE_TOKENS = {
    "yyyy": "%Y",
    "uuuu": "%Y",
    "yy": "%y",
    "MM": "%m",
    "dd": "%d",
    "HH": "%H",
    "mm": "%M",
    "ss": "%S",
}
_TOKEN = re.compile(r"'[^']*'|([A-Za-z])\1*|.", re.DOTALL)
_ZERO_OPERATORS = (("mustBe", 0), ("mustBeLessOrEqualTo", 0), ("mustBeLessThan", 1))


def strftime_from_contract_format(fmt: str) -> str | None:
    """The Python ``strftime`` form of a JDK-style date format, or None if it is not one.

    Example:
        >>> strftime_from_contract_format("dd/MM/yyyy")
        '%d/%m/%Y'
        >>> strftime_from_contract_format("email") is None
        True
    """
    out: list[str] = []
    letters = False
    for m in _TOKEN.finditer(fmt):
        tok = m.group()
        if tok.startswith("'") and len(tok) >= 2:
            out.append(tok[1:-1].replace("%", "%%") if tok != "''" else "'")
        elif tok[0].isalpha():
            if tok not in _DATE_TOKENS:
                return None
            letters = True
            out.append(_DATE_TOKENS[tok])
        else:
            out.append("%%" if tok == "%" else tok)
    return "".join(out) if letters else None


def _allows_no_bad_row(rule: dict[str, Any]) -> bool:
    """Whether a quality rule allows no bad row (``mustBe: 0``, or the same in other words)."""
    if rule.get("unit", "rows") not in ("rows", "percent"):
        return False
    for key, bound in _ZERO_OPERATORS:
        if key in rule:
            value = rule[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            if key == "mustBeLessThan" and rule.get("unit", "rows") == "percent":
                return False  # "< 1 percent" allows some bad rows
            return value == bound
    return False


def _row_count(rule: dict[str, Any], where: str) -> RowCount | None:
    """The bounds a ``rowCount`` rule sets, or None if they are not numbers."""
    single = (
        "mustBe",
        "mustBeGreaterThan",
        "mustBeGreaterOrEqualTo",
        "mustBeLessThan",
        "mustBeLessOrEqualTo",
    )
    bounds = [rule[k] for k in single if k in rule]
    bounds += list(rule.get("mustBeBetween") or [])
    if not bounds or any(isinstance(b, bool) or not isinstance(b, int | float) for b in bounds):
        return None
    if "mustBe" in rule:
        n = rule["mustBe"]
        return RowCount(min_value=n, max_value=n, where=where)
    if "mustBeGreaterThan" in rule:
        return RowCount(min_value=rule["mustBeGreaterThan"], strict_min=True, where=where)
    if "mustBeGreaterOrEqualTo" in rule:
        return RowCount(min_value=rule["mustBeGreaterOrEqualTo"], where=where)
    if "mustBeLessThan" in rule:
        return RowCount(max_value=rule["mustBeLessThan"], strict_max=True, where=where)
    if "mustBeLessOrEqualTo" in rule:
        return RowCount(max_value=rule["mustBeLessOrEqualTo"], where=where)
    if "mustBeBetween" in rule:
        low, high = rule["mustBeBetween"]
        return RowCount(min_value=low, max_value=high, where=where)
    return None


class _RuleParser:
    """Collects the typed rules of one contract, and every problem with them."""

    def __init__(self) -> None:
        self.row: list[RowRule] = []
        self.table: list[TableRule] = []
        self.unchecked: list[str] = []
        self.problems: list[str] = []

    def add(self, rule: RowRule) -> None:
        if rule not in self.row:
            self.row.append(rule)

    def pattern(self, column: str, regex: Any, where: str) -> None:
        if not isinstance(regex, str):
            self.problems.append(f"`{where}`: the pattern must be a string (a regular expression)")
            return
        try:
            re.compile(regex)
        except re.error as e:
            self.problems.append(
                f"`{where}`: {regex!r} is not a valid regular expression ({e}); fix the pattern"
            )
            return
        self.add(Pattern(column, regex, where=where))

    def allowed(self, column: str, values: Any, where: str) -> None:
        if not isinstance(values, list) or not values:
            self.problems.append(f"`{where}`: list the allowed values, e.g. [M, F, U]")
            return
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, str | int)]
        if bad:
            self.problems.append(
                f"`{where}`: allowed values must be text or whole numbers; quote the other(s) "
                f"({len(bad)} found)"
            )
            return
        self.add(AllowedValues(column, tuple(str(v) for v in values), where=where))

    def column(self, index: int, prop: dict[str, Any]) -> None:
        name = prop["name"]
        here = f"schema[0].properties[{index}]"
        if prop.get("required"):
            self.add(Required(name, where=f"{here}.required"))
        if prop.get("unique"):
            self.add(Unique(name, where=f"{here}.unique"))
        options = prop.get("logicalTypeOptions") or {}
        if "pattern" in options:
            self.pattern(name, options["pattern"], f"{here}.logicalTypeOptions.pattern")
        for key, cls in (("minLength", MinLength), ("maxLength", MaxLength)):
            if key in options:
                limit = options[key]
                where = f"{here}.logicalTypeOptions.{key}"
                if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                    self.problems.append(f"`{where}`: must be a whole number of characters")
                else:
                    self.add(cls(name, limit, where=where))
        if "format" in options:
            where = f"{here}.logicalTypeOptions.format"
            fmt = options["format"]
            strftime = strftime_from_contract_format(fmt) if isinstance(fmt, str) else None
            if strftime is None:
                self.unchecked.append(
                    f"{where}: format {fmt!r} is not a date format built from yyyy, yy, MM, dd, "
                    "HH, mm, ss (other formats are not checked)"
                )
            else:
                self.add(DateFormat(name, fmt, strftime, where=where))
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if key in options:
                self.unchecked.append(f"{here}.logicalTypeOptions.{key}: bounds are not checked")
        if prop.get("enum"):
            self.allowed(name, [e.get("value") for e in prop["enum"]], f"{here}.enum")
        for j, rule in enumerate(prop.get("quality") or []):
            self.column_quality(name, rule, f"{here}.quality[{j}]")

    def column_quality(self, column: str, rule: dict[str, Any], where: str) -> None:
        kind = rule.get("type", "library")
        if kind == "text":
            return  # documentation for people, nothing to check
        metric = rule.get("metric") or rule.get("rule")
        if kind != "library" or metric is None:
            self.unchecked.append(f"{where}: {kind} rules are not checked")
            return
        args = rule.get("arguments") or {}
        zero = _allows_no_bad_row(rule)
        if metric == "duplicateValues" and zero:
            self.add(Unique(column, where=where))
        elif metric == "nullValues" and zero:
            self.add(Required(column, where=where))
        elif (
            metric == "nullValues"
            and rule.get("unit") == "percent"
            and ("mustBeLessThan" in rule or "mustBeLessOrEqualTo" in rule)
        ):
            strict = "mustBeLessThan" in rule
            limit = rule["mustBeLessThan" if strict else "mustBeLessOrEqualTo"]
            self.table.append(NullShare(column, float(limit), strict=strict, where=where))
        elif metric == "invalidValues" and zero and ("pattern" in args or "validValues" in args):
            if "pattern" in args:
                self.pattern(column, args["pattern"], f"{where}.arguments.pattern")
            if "validValues" in args:
                self.allowed(column, args["validValues"], f"{where}.arguments.validValues")
        else:
            self.unchecked.append(
                f"{where}: metric {metric!r} with these arguments and thresholds is not checked "
                "(row rules must allow no bad row: mustBe: 0)"
            )

    def table_quality(self, rule: dict[str, Any], where: str) -> None:
        kind = rule.get("type", "library")
        if kind == "text":
            return
        if kind != "library":
            self.unchecked.append(f"{where}: {kind} rules are not checked")
            return
        metric = rule.get("metric") or rule.get("rule")
        count = _row_count(rule, where) if metric == "rowCount" else None
        if count is None:
            self.unchecked.append(
                f"{where}: metric {metric!r} is not checked at schema level (only rowCount is)"
            )
        else:
            self.table.append(count)


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
    rules = _RuleParser()
    for i, prop in enumerate(table["properties"]):
        rules.column(i, prop)
    for j, rule in enumerate(table.get("quality") or []):
        rules.table_quality(rule, f"schema[0].quality[{j}]")
    custom = _custom(doc.get("customProperties"))
    threshold = custom.get("quarantineThreshold")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0 <= threshold <= 1
    ):
        rules.problems.append(
            "`customProperties.quarantineThreshold`: must be a share between 0 and 1 "
            "(e.g. 0.005 for 0.5%)"
        )
    if rules.problems:
        raise ContractError(str(path), rules.problems)
    return Contract(
        path=path,
        id=doc["id"],
        version=str(doc["version"]),
        table=table["name"],
        columns=columns,
        custom=custom,
        row_rules=tuple(rules.row),
        table_rules=tuple(rules.table),
        unchecked_rules=tuple(rules.unchecked),
    )
