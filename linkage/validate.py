"""Check an extract's accepted rows against its contract's row rules with Great Expectations.

The contract's rules (parsed by `linkage.contracts`) compile to a GX 1.x expectation suite
(`build_suite`, a pure function). `validate_extract` runs it on the rows a source connector
accepted, moves every row that breaks a rule into the extract's quarantine file and rewrites the
accepted file without them. The books still balance::

    delivered == accepted + extract quarantined + validation quarantined + blank_lines + duplicates

How each rule compiles (``"<rule>:<column>"`` is the quarantine reason):

- ``required`` (``required: true``; ``nullValues`` with ``mustBe: 0``):
  ``expect_column_values_to_not_be_null``
- ``unique`` (``unique: true``; ``duplicateValues`` with ``mustBe: 0``):
  ``expect_column_values_to_be_unique``
- ``pattern`` (``logicalTypeOptions.pattern``; ``invalidValues`` with ``arguments.pattern``):
  ``expect_column_values_to_match_regex`` (searched, as JSON Schema does: anchor with ``^...$``)
- ``max_length`` / ``min_length`` (``logicalTypeOptions.maxLength`` / ``minLength``):
  ``expect_column_value_lengths_to_be_between``
- ``allowed_values`` (``enum``; ``invalidValues`` with ``arguments.validValues``):
  ``expect_column_values_to_be_in_set``
- ``date_format`` (``logicalTypeOptions.format`` such as ``yyyy-MM-dd``, translated to
  ``%Y-%m-%d``): ``expect_column_values_to_be_dates_in_format`` (GX's
  ``expect_column_values_to_match_strftime_format`` parsing each distinct value once:
  :mod:`linkage.gx_expectations`), so an impossible date such as 2021-02-30 fails too (a regex
  would pass it)
- ``row_count`` (schema-level ``rowCount``): ``expect_table_row_count_to_be_between``
- ``null_share`` (``nullValues`` in ``percent``):
  ``expect_column_proportion_of_non_null_values_to_be_between``

An empty string counts as missing. A missing value passes every rule but ``required``. Values
stay text throughout (identifiers keep their leading zeros). ``unique`` quarantines every row that
shares a value (conflicting duplicates; exact duplicates were already dropped by the connector).
``row_count`` and ``null_share`` are about the whole extract: they quarantine nothing, but a
breach makes the result unsuccessful, as does a quarantined share above the contract's
``quarantineThreshold``.

Speed (measured on 1M rows, 2 cores; ``bench/validate_1m.py``): GX's pandas engine copies the
whole frame for each expectation and, with the row id as a plain column, builds its list of
failing rows one ``DataFrame.at`` call at a time; ``ValidationDefinition.run`` then serialises
the whole result into the context's store. So each column's expectations run on a narrow frame
indexed by ``_line``, GX is asked for row ids only (``exclude_unexpected_values``), and
``Batch.validate`` is used, which stores nothing. With 30% of rows failing, GX time fell from
about 16 s to 6 s; with none failing, from 6.5 s to 5 s. GX's date rule then called
``datetime.strptime`` on every row (12.5 s of 16.9 s for a 714,000-row extract, profiled);
parsing each distinct date once brought that extract's validation to 6.2 s
(``bench/validate_1m.py``, load about 1).

Privacy: GX results in COMPLETE format hold failing values, which here are personal data. This
module asks GX for row ids only, and writes a results file built from an allow-list (counts,
rule and column names), so no value reaches it or the logs. Quarantined values go to the
quarantine file only (mode 0600).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from linkage.contracts import (
    AllowedValues,
    Contract,
    DateFormat,
    MaxLength,
    MinLength,
    NullShare,
    Pattern,
    Required,
    RowCount,
    RowRule,
    TableRule,
    Unique,
)
from linkage.errors import ContractError, LinkageError
from linkage.reports.datadocs import sanitise_result
from linkage.runlog import quarantine_share
from linkage.sources.common import (
    ACCEPTED_MODE,
    LINE,
    QUARANTINE_MODE,
    QUARANTINE_SCHEMA,
    ExtractResult,
    accepted_schema,
)

logger = logging.getLogger(__name__)

RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [LINE],
    # Row ids only: no failing values in the result, and a fast path in GX for named indices.
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
    "partial_unexpected_count": 0,
}
"""What GX is asked to return: every failing row's ``_line``, and no values."""

_TABLE = "_table"
"""Group key for expectations about the whole extract (row count)."""


class ValidationError(LinkageError):
    """Validation could not be carried out (not: the data broke a rule, which is a result)."""

    exit_code = 70  # EX_SOFTWARE


class ExpectationErrored(ValidationError):
    """A GX expectation raised an error, so it neither passed nor failed.

    The message names the expectations and their error types; GX's own messages (which can
    quote a value) are kept in ``causes`` for debugging, not in the message.
    """

    def __init__(self, agency: str, errored: list[tuple[str, str, str, str]]) -> None:
        self.agency = agency
        self.causes = errored  # (expectation type, column, error type, GX message)
        names = "; ".join(f"{e} on {c!r} ({t})" for e, c, t, _ in errored)
        super().__init__(
            f"agency {agency!r}: {len(errored)} expectation(s) raised an error instead of "
            f"checking the rows: {names}. Nothing was quarantined or rewritten. The cause is in "
            "this error's `causes` (not printed here, as it may quote a value)"
        )


class ExtractChanged(ValidationError):
    """The extract's files do not match its `ExtractResult` (changed, or validated already)."""


@dataclass(frozen=True)
class ValidationResult:
    """What validation did to one extract. Paths and counts, never values.

    ``success`` says whether the extract may be used: every table rule (row count, null share)
    holds and ``quarantine_rate`` (rows quarantined by reading and validation together, as a share
    of the distinct records delivered: not blank lines or exact duplicates) is within the
    contract's ``quarantineThreshold``. Rows that break row rules do not by
    themselves make it unsuccessful: they are quarantined. ``problems`` says why it failed.
    """

    agency: str
    accepted_path: Path
    quarantine_path: Path
    checked: int
    accepted: int
    quarantined: int
    reasons: dict[str, int]
    results_path: Path
    gx_result_path: Path
    """The run as one GX suite validation result, sanitised (counts only): input to Data Docs."""
    expectations: int
    success: bool
    quarantine_rate: float = 0.0
    quarantine_threshold: float | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)
    rule_problems: tuple[str, ...] = field(default_factory=tuple)
    """The whole-extract rules that failed (``problems`` without the quarantined share, which
    the publishing gates judge themselves: :mod:`linkage.gates`)."""

    def __post_init__(self) -> None:
        if self.checked != self.accepted + self.quarantined:
            raise ValueError(
                f"agency {self.agency!r}: validation does not reconcile: checked {self.checked} "
                f"!= accepted {self.accepted} + quarantined {self.quarantined}; this is a bug"
            )


# --- compiling the contract -----------------------------------------------------------------------


def _describe(rule: RowRule) -> str:
    """A short description of a breach, naming the column and the rule, never the value."""
    match rule:
        case Required(column=c):
            return f"{c} is missing but required"
        case Unique(column=c):
            return f"{c} is shared with another row (conflicting duplicates)"
        case Pattern(column=c, regex=r):
            return f"{c} does not match {r}"
        case MaxLength(column=c, limit=n):
            return f"{c} is longer than {n} characters"
        case MinLength(column=c, limit=n):
            return f"{c} is shorter than {n} characters"
        case AllowedValues(column=c, values=v):
            return f"{c} is not one of the {len(v)} allowed values"
        case DateFormat(column=c, format=f):
            return f"{c} is not a valid date in the format {f}"
    raise TypeError(f"unknown row rule {rule!r}")  # pragma: no cover


def _row_expectation(rule: RowRule) -> Any:
    import great_expectations.expectations as gxe

    meta = {
        "rule": rule.rule,
        "field": rule.column,
        "where": rule.where,
        "row_rule": True,
        "detail": _describe(rule),
    }
    match rule:
        case Required(column=c):
            return gxe.ExpectColumnValuesToNotBeNull(column=c, meta=meta)
        case Unique(column=c):
            return gxe.ExpectColumnValuesToBeUnique(column=c, meta=meta)
        case Pattern(column=c, regex=r):
            return gxe.ExpectColumnValuesToMatchRegex(column=c, regex=r, meta=meta)
        case MaxLength(column=c, limit=n):
            return gxe.ExpectColumnValueLengthsToBeBetween(column=c, max_value=n, meta=meta)
        case MinLength(column=c, limit=n):
            return gxe.ExpectColumnValueLengthsToBeBetween(column=c, min_value=n, meta=meta)
        case AllowedValues(column=c, values=v):
            return gxe.ExpectColumnValuesToBeInSet(column=c, value_set=list(v), meta=meta)
        case DateFormat(column=c, strftime=f):
            from linkage.gx_expectations import ExpectColumnValuesToBeDatesInFormat

            return ExpectColumnValuesToBeDatesInFormat(column=c, strftime_format=f, meta=meta)
    raise TypeError(f"unknown row rule {rule!r}")  # pragma: no cover


def _table_expectation(rule: TableRule) -> Any:
    import great_expectations.expectations as gxe

    match rule:
        case RowCount():
            meta = {"rule": rule.rule, "field": _TABLE, "where": rule.where, "row_rule": False}
            return gxe.ExpectTableRowCountToBeBetween(
                min_value=None if rule.min_value is None else int(rule.min_value),
                max_value=None if rule.max_value is None else int(rule.max_value),
                strict_min=rule.strict_min,
                strict_max=rule.strict_max,
                meta=meta,
            )
        case NullShare(column=c):
            meta = {"rule": rule.rule, "field": c, "where": rule.where, "row_rule": False}
            return gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(
                column=c,
                min_value=1 - rule.max_percent / 100,
                strict_min=rule.strict,
                meta=meta,
            )
    raise TypeError(f"unknown table rule {rule!r}")  # pragma: no cover


def _check_rules(contract: Contract) -> None:
    """Refuse a contract whose rules cannot all be checked here, naming each and the fix."""
    problems = [
        f"`{u}`; remove the rule, restate it as a supported one, or add support for it in "
        "linkage/contracts.py"
        for u in contract.unchecked_rules
    ]
    columns = set(contract.column_names)
    for rule in contract.row_rules:
        if rule.column not in columns:
            problems.append(
                f"`{rule.where}`: the rule is on {rule.column!r}, not a contract column"
            )
    if problems:
        raise ContractError(str(contract.path), problems)


def build_suite(contract: Contract) -> Any:
    """Compile a contract's rules to a GX expectation suite (no data, no context: pure).

    Each expectation carries ``meta`` with ``rule``, ``field`` (the column, or ``_table``),
    ``where`` (its place in the contract) and ``row_rule`` (whether breaking it quarantines
    the row).

    Example:
        >>> from linkage.contracts import load_contract
        >>> suite = build_suite(load_contract(Path("data_contracts/nhs_trust.yaml")))
        >>> [e.meta["rule"] for e in suite.expectations][:3]
        ['required', 'unique', 'pattern']

    Raises:
        ContractError: the contract states a rule that cannot be checked (see
            ``Contract.unchecked_rules``).
    """
    import great_expectations as gx

    _check_rules(contract)
    expectations = [_row_expectation(r) for r in contract.row_rules]
    expectations += [_table_expectation(r) for r in contract.table_rules]
    return gx.ExpectationSuite(
        name=f"{contract.id}-{contract.version}",
        expectations=expectations,
        meta={"contract": contract.id, "contract_version": contract.version},
    )


# --- running GX -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """One expectation's outcome: its metadata, the sanitised result, and the failing lines."""

    meta: Mapping[str, Any]
    summary: dict[str, Any]
    lines: np.ndarray
    gx_result: dict[str, Any]
    """The GX result as a dict, sanitised of row-level detail (for Data Docs)."""


_KEPT = ("element_count", "unexpected_count", "unexpected_percent", "missing_count")


def _number(value: Any) -> int | float | None:
    """A count or share from a GX result, or None: anything else (text, lists, NaN) is dropped."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return None


def sanitise(result: Any) -> dict[str, Any]:
    """The parts of one GX expectation result that hold no data values: an allow-list.

    Kept: expectation type, column, rule metadata, success, element/unexpected/missing counts,
    the unexpected percentage and, for table rules, a numeric observed value. Everything else
    (``unexpected_list``, ``partial_unexpected_*``, ``unexpected_index_list``, queries,
    ``details``) is dropped, whatever GX put in it.
    """
    config = result.expectation_config
    meta = config.meta or {}
    raw = result.result or {}
    out: dict[str, Any] = {
        "expectation_type": str(config.type),
        "column": str(config.kwargs.get("column", _TABLE)),
        "rule": str(meta.get("rule", "")),
        "where": str(meta.get("where", "")),
        "row_rule": bool(meta.get("row_rule", False)),
        "success": bool(result.success),
    }
    for key in _KEPT:
        if key in raw:
            out[key] = _number(raw[key])
    if not out["row_rule"] and "observed_value" in raw:
        out["observed_value"] = _number(raw["observed_value"])
    return out


def _errors(result: Any) -> list[tuple[str, str]]:
    """(error type, message) for each error GX caught while evaluating this expectation."""
    info = result.exception_info or {}
    entries: Iterable[Any]
    if "raised_exception" in info:
        entries = [info]
    else:  # keyed by metric, when GX aborted metrics
        entries = (v for v in info.values() if isinstance(v, Mapping))
    found = []
    for entry in entries:
        if entry.get("raised_exception"):
            message = str(entry.get("exception_message") or "")
            trace = str(entry.get("exception_traceback") or "")
            last = trace.strip().splitlines()[-1] if trace.strip() else message
            found.append((last.split(":", 1)[0] or "error", message))
    return found


def _failing_lines(result: Any) -> np.ndarray:
    """The ``_line`` of every row that broke this expectation, checked against its count."""
    raw = result.result or {}
    listed = raw.get("unexpected_index_list") or []
    parts: list[Any] = []
    for item in listed:
        if isinstance(item, Mapping):
            value = item.get(LINE)
            if isinstance(value, list):
                parts.extend(value)
            else:
                parts.append(value)
        else:
            parts.append(item)
    lines = np.asarray(parts, dtype=np.int64)
    expected = raw.get("unexpected_count")
    if expected is not None and int(expected) != len(lines):
        config = result.expectation_config
        raise ValidationError(
            f"{config.type} on {config.kwargs.get('column')!r}: GX reported {expected} failing "
            f"rows but listed {len(lines)}; refusing to guess which rows failed"
        )
    return lines


class _Runner:
    """An ephemeral GX context with one pandas data source, quiet (no progress bars)."""

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # GX forces this one logger to INFO when imported, whatever the application configured,
        # and it then logs "Created temporary directory ... for ephemeral docs site" for every
        # context (the directory is removed at once): keep that out of the nightly log.
        logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
        self._gx = gx
        self.context = gx.get_context(mode="ephemeral")
        # tqdm bars on stderr ("Calculating Metrics") are noise in a nightly log.
        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        source = self.context.data_sources.add_pandas("extract")
        self.batch = source.add_dataframe_asset("rows").add_batch_definition_whole_dataframe("all")
        self._n = 0

    def run(self, frame: pd.DataFrame, expectations: Sequence[Any]) -> list[Any]:
        self._n += 1
        suite = self._gx.ExpectationSuite(name=f"part-{self._n}", expectations=list(expectations))
        batch = self.batch.get_batch(batch_parameters={"dataframe": frame})
        # `Batch.validate`, not `ValidationDefinition.run`: the latter also serialises the whole
        # result into the context's results store, which took longer than the checks themselves
        # when many rows fail (and kept a second copy of every failing row id in memory).
        outcome = batch.validate(suite, result_format=RESULT_FORMAT)
        return list(outcome.results)


def _groups(suite: Any) -> dict[str, list[Any]]:
    """The suite's expectations by column, in suite order (table expectations under ``_table``)."""
    groups: dict[str, list[Any]] = {}
    for e in suite.expectations:
        groups.setdefault(getattr(e, "column", None) or _TABLE, []).append(e)
    return groups


def _column_frame(table: pa.Table, column: str | None, index: pd.Index) -> pd.DataFrame:
    """One column as a pandas frame indexed by ``_line``, with "" read as missing."""
    if column is None:
        return pd.DataFrame(index=index)
    values = table[column]
    series = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values).to_pandas()
    # Set, never pass, the index: passing it would align on the default 0..n-1 labels and
    # silently turn values into NaN.
    series.index = index
    return series.to_frame(column)


def _kind(expectation: Any) -> str:
    """``extract`` (a rule about the whole extract: checked on every row even in an incremental
    intake), ``unique`` (a row's verdict depends on the other rows) or ``row``."""
    meta = expectation.meta or {}
    if not meta.get("row_rule"):
        return "extract"
    return "unique" if meta.get("rule") == "unique" else "row"


#: Values in one pandas frame of the incremental row checks (memory: about 100 bytes each).
_CELLS_PER_RUN = 1_000_000


def _run_suite(
    agency: str, suite: Any, table: pa.Table, known: np.ndarray | None = None
) -> list[_Outcome]:
    runner = _Runner()
    index = pd.Index(table[LINE].to_numpy(), name=LINE)
    fresh = None if known is None else ~np.isin(index.to_numpy(), known)
    outcomes: list[_Outcome] = []
    errored: list[tuple[str, str, str, str]] = []

    def check(frame: pd.DataFrame, expectations: list[Any]) -> None:
        for result in runner.run(frame, expectations):
            config = result.expectation_config
            problems = _errors(result)
            if problems:
                for kind, message in problems:
                    col = str(config.kwargs.get("column", _TABLE))
                    errored.append((str(config.type), col, kind, message))
                continue
            meta = config.meta or {}
            lines = _failing_lines(result) if meta.get("row_rule") else np.empty(0, np.int64)
            outcomes.append(
                _Outcome(
                    meta=meta,
                    summary=sanitise(result),
                    lines=lines,
                    gx_result=sanitise_result(result.to_json_dict()),
                )
            )

    rest: list[Any] = []
    for column, group in _groups(suite).items():
        every = [e for e in group if fresh is None or _kind(e) == "extract"]
        unique = [e for e in group if fresh is not None and _kind(e) == "unique"]
        rest += [e for e in group if fresh is not None and _kind(e) == "row"]
        if every:
            check(_column_frame(table, None if column == _TABLE else column, index), every)
        if unique and fresh is not None:
            # The known rows were unique among themselves (the release holds them), so only
            # the new and changed rows and the known rows sharing a value with one can clash.
            values = table[column]
            shared = pc.is_in(values, value_set=values.filter(pa.array(fresh)), skip_nulls=True)
            rows = fresh | pc.fill_null(shared, False).to_numpy(zero_copy_only=False)
            check(_column_frame(table.filter(pa.array(rows)), column, index[rows]), unique)
    if rest and fresh is not None:
        # The row rules on the new and changed rows only: usually few rows, so several columns
        # in one frame and one run (a run costs about 0.1 s however small its frame).
        fresh_rows, lines = table.filter(pa.array(fresh)), index[fresh]
        columns = sorted({e.column for e in rest})  # each row rule is on one column
        per_run = max(1, _CELLS_PER_RUN // max(1, fresh_rows.num_rows))
        for i in range(0, len(columns), per_run):
            batch = columns[i : i + per_run]
            check(  # the frame is dropped before the next is built
                pd.concat([_column_frame(fresh_rows, c, lines) for c in batch], axis=1),
                [e for e in rest if e.column in batch],
            )
    if errored:
        raise ExpectationErrored(agency, errored)
    return outcomes


# --- quarantine and output ------------------------------------------------------------------------


def _csv_text(table: pa.Table, columns: Sequence[str]) -> pa.Array:
    """Each row's values as one comma-separated line (RFC 4180 quoting; missing is empty)."""
    fields = []
    for name in columns:
        values = pc.fill_null(table[name], "")
        needs_quotes = pc.match_substring_regex(values, '[,"\r\n]')
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
        fields.append(pc.if_else(needs_quotes, quoted, values))
    if len(fields) == 1:
        return fields[0]
    return pc.binary_join_element_wise(*fields, ",")


def _quarantine_rows(
    bad: pa.Table, columns: Sequence[str], by_reason: dict[str, tuple[np.ndarray, str]]
) -> pa.Table:
    """Quarantine records for the rows in ``bad``: line, reasons, details (no values), raw text."""
    lines = bad[LINE]
    reasons, details = [], []
    for reason, (failing, detail) in by_reason.items():
        hit = pc.is_in(lines, value_set=pa.array(failing, pa.int64()))
        reasons.append(pc.if_else(hit, reason, pa.scalar(None, pa.string())))
        details.append(pc.if_else(hit, detail, pa.scalar(None, pa.string())))

    def joined(parts: list[Any], sep: str) -> Any:
        if len(parts) == 1:
            return parts[0]
        return pc.binary_join_element_wise(*parts, sep, null_handling="skip")

    return pa.table(
        [
            lines.cast(pa.int64()),
            joined(reasons, ";"),
            joined(details, "; "),
            _csv_text(bad, columns),
        ],
        schema=QUARANTINE_SCHEMA,
    )


@contextlib.contextmanager
def _atomic(path: Path, mode: int) -> Iterator[Path]:
    """A temporary file beside ``path`` (already with ``mode``), moved over it on success."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        os.fchmod(fd, mode)
        os.close(fd)
        yield tmp
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_parquet(table: pa.Table, path: Path, mode: int) -> None:
    with _atomic(path, mode) as tmp:
        pq.write_table(table, tmp)


def _read_inputs(extracted: ExtractResult, contract: Contract) -> tuple[pa.Table, pa.Table]:
    """The accepted rows and the existing quarantine, checked against the extract's counts."""
    table = pq.read_table(extracted.accepted_path)
    expected = accepted_schema(contract)
    if table.schema.names != expected.names:
        raise ExtractChanged(
            f"{extracted.accepted_path}: columns {table.schema.names} are not the contract's "
            f"{expected.names} plus {LINE}; validate the file the connector wrote for this "
            "contract"
        )
    table = table.cast(expected)
    if table.num_rows != extracted.accepted:
        raise ExtractChanged(
            f"{extracted.accepted_path}: holds {table.num_rows} rows but the extract accepted "
            f"{extracted.accepted}: the file changed since it was read (or was validated "
            "already); read the extract again"
        )
    if pc.count_distinct(table[LINE]).as_py() != table.num_rows:
        raise ExtractChanged(f"{extracted.accepted_path}: `{LINE}` is not unique; this is a bug")
    quarantine = pq.read_table(extracted.quarantine_path).cast(QUARANTINE_SCHEMA)
    return table, quarantine


def _write_results(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _atomic(path, ACCEPTED_MODE) as tmp:
        tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def validate_extract(
    extracted: ExtractResult,
    contract: Contract,
    out_dir: Path,
    known_lines: Sequence[int] | np.ndarray | None = None,
) -> ValidationResult:
    """Check an extract's accepted rows against the contract; quarantine the rows that fail.

    Rewrites ``extracted.accepted_path`` without the failing rows and adds them to
    ``extracted.quarantine_path`` (reason ``"<rule>:<column>"``, several joined by ``;``; raw
    text = the row's values as one CSV line), both atomically; writes the sanitised GX result to
    ``out_dir/<agency>.validation.json``. When no row fails, the two files are left untouched.

    ``known_lines`` (an incremental intake, :mod:`linkage.incremental`): rows delivered exactly
    as the current release holds them, which passed these row rules already (and were unique
    among themselves); the whole-extract rules check every row, ``unique`` the new and changed
    rows and the known rows sharing a value with one, the other row rules the new and changed
    rows only. The expectations' counts in the results cover the rows each checked.

    Example:
        >>> extracted = read_extract(agency, contract, work)  # doctest: +SKIP
        >>> result = validate_extract(extracted, contract, work)  # doctest: +SKIP
        >>> extracted.delivered == (  # doctest: +SKIP
        ...     result.accepted + extracted.quarantined + result.quarantined
        ...     + extracted.blank_lines + extracted.duplicates
        ... )
        True

    Raises:
        ContractError: the contract states a rule that cannot be checked.
        ExpectationErrored: an expectation raised an error instead of checking the rows.
        ExtractChanged: the files no longer match ``extracted`` (e.g. validated twice).
    """
    suite = build_suite(contract)
    table, quarantine = _read_inputs(extracted, contract)
    known = None if known_lines is None else np.asarray(known_lines, dtype=np.int64)
    outcomes = _run_suite(extracted.agency, suite, table, known)

    by_reason: dict[str, tuple[np.ndarray, str]] = {}
    for o in outcomes:
        if o.meta.get("row_rule") and len(o.lines):
            reason = f"{o.meta['rule']}:{o.meta['field']}"
            before, detail = by_reason.get(reason, (np.empty(0, np.int64), ""))
            by_reason[reason] = (np.union1d(before, o.lines), detail or str(o.meta["detail"]))
    failing = (
        np.unique(np.concatenate([lines for lines, _ in by_reason.values()]))
        if by_reason
        else np.empty(0, np.int64)
    )

    if len(failing):
        is_bad = pc.is_in(table[LINE], value_set=pa.array(failing, pa.int64()))
        kept = quarantine.filter(
            pc.invert(pc.is_in(quarantine[LINE], value_set=pa.array(failing, pa.int64())))
        )
        if kept.num_rows != extracted.quarantined:
            raise ExtractChanged(
                f"{extracted.quarantine_path}: holds {kept.num_rows} rows from reading but the "
                f"extract quarantined {extracted.quarantined}; read the extract again"
            )
        new = _quarantine_rows(table.filter(is_bad), contract.column_names, by_reason)
        merged = pa.concat_tables([kept, new]).sort_by(LINE)
        # Quarantine first: a crash between the two leaves rows in both places, never in
        # neither, and a re-run replaces (never repeats) the quarantine records.
        _write_parquet(merged, extracted.quarantine_path, QUARANTINE_MODE)
        _write_parquet(table.filter(pc.invert(is_bad)), extracted.accepted_path, ACCEPTED_MODE)

    checked = table.num_rows
    quarantined = len(failing)
    # The same share as the publishing gate (linkage.gates).
    rate = quarantine_share(
        extracted.quarantined + quarantined,
        extracted.delivered,
        extracted.blank_lines,
        extracted.duplicates,
    )
    threshold = contract.quarantine_threshold
    rule_problems = [
        f"{o.meta['rule']}:{o.meta['field']} does not hold"
        for o in outcomes
        if not o.meta.get("row_rule") and not o.summary["success"]
    ]
    problems = list(rule_problems)
    if threshold is not None and rate > threshold:
        problems.append(
            f"{rate:.4%} of delivered records were quarantined, above the contract's "
            f"quarantineThreshold of {threshold:.4%}"
        )
    reasons = {k: len(v[0]) for k, v in by_reason.items()}
    results_path = out_dir / f"{extracted.agency}.validation.json"
    summaries = [o.summary for o in outcomes]
    _write_results(
        results_path,
        {
            "agency": extracted.agency,
            "contract": {"id": contract.id, "version": contract.version},
            "engine": f"great_expectations {_gx_version()}",
            "suite": str(suite.name),
            "checked": checked,
            "accepted": checked - quarantined,
            "quarantined": quarantined,
            "reasons": reasons,
            "quarantine_rate": rate,
            "quarantine_threshold": threshold,
            "success": not problems,
            "problems": problems,
            "statistics": {
                "evaluated_expectations": len(summaries),
                "successful_expectations": sum(s["success"] for s in summaries),
                "unsuccessful_expectations": sum(not s["success"] for s in summaries),
            },
            "results": summaries,
        },
    )
    gx_result_path = out_dir / f"{extracted.agency}.gx-result.json"
    _write_results(
        gx_result_path,
        {
            "success": not problems,
            "suite_name": f"{extracted.agency}.{contract.id}",
            "results": [o.gx_result for o in outcomes],
            "statistics": {
                "evaluated_expectations": len(outcomes),
                "successful_expectations": sum(o.summary["success"] for o in outcomes),
                "unsuccessful_expectations": sum(not o.summary["success"] for o in outcomes),
                "success_percent": 100.0
                * sum(o.summary["success"] for o in outcomes)
                / max(len(outcomes), 1),
            },
            "meta": {
                "active_batch_definition": {
                    "datasource_name": extracted.agency,
                    "data_connector_name": "fluent",
                    "data_asset_name": contract.table,
                    "batch_identifiers": {},
                },
                "great_expectations_version": _gx_version(),
                "run_id": {"run_name": extracted.agency, "run_time": None},
            },
        },
    )
    result = ValidationResult(
        agency=extracted.agency,
        accepted_path=extracted.accepted_path,
        quarantine_path=extracted.quarantine_path,
        checked=checked,
        accepted=checked - quarantined,
        quarantined=quarantined,
        reasons=reasons,
        results_path=results_path,
        gx_result_path=gx_result_path,
        expectations=len(suite.expectations),
        success=not problems,
        quarantine_rate=rate,
        quarantine_threshold=threshold,
        problems=tuple(problems),
        rule_problems=tuple(rule_problems),
    )
    logger.info(
        "validated %s against %s v%s: checked=%d accepted=%d quarantined=%d expectations=%d "
        "quarantine_rate=%.4f success=%s reasons=%s",
        result.agency,
        contract.id,
        contract.version,
        result.checked,
        result.accepted,
        result.quarantined,
        result.expectations,
        result.quarantine_rate,
        result.success,
        result.reasons,
    )
    return result


def _gx_version() -> str:
    import great_expectations as gx

    return str(gx.__version__)
