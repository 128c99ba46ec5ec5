"""Dates of birth: strict parsing with the mapping's strftime format, then range and placeholders.

Polars' ``strptime`` is not used: with no separators it is lenient in ways that corrupt dates
(measured on polars 2.1: ``%m%d%Y`` reads ``1231990`` as 0990-12-31, ``%Y%m%d`` reads ``1985031``
as 1985-03-01). Instead the format is compiled into one anchored regular expression with a
capture group per part; the parts are cast to integers and checked (month 1-12, day within the
month, leap years) before a date is built, so ``2021-02-30`` is unparseable rather than an error
or a silently shifted date.

Supported directives: ``%Y`` (4 digits), ``%m``, ``%d`` (2 digits, or 1-2 when both neighbours
are literal separators, as in ``%d/%m/%Y`` with ``1/2/1980``), ``%b`` / ``%B`` (English month
names, any case), ``%H`` ``%M`` ``%S`` (read and ignored: a time of day on a DOB carries no
information) and ``%%``. Without ``%d`` the date is month-precision (stored as the 1st), with only
``%Y`` it is year-precision (stored as 1 January).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import polars as pl

from linkage.standardise.placeholders import DOB_PLACEHOLDERS
from linkage.standardise.text import clean_source, first_flag

#: Dates of birth before this are out of range (bad-inputs D6; schemas/canonical.py).
EARLIEST_DOB = date(1890, 1, 1)

_MONTH_ABBR = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTH_FULL = (
    "JANUARY",
    "FEBRUARY",
    "MARCH",
    "APRIL",
    "MAY",
    "JUNE",
    "JULY",
    "AUGUST",
    "SEPTEMBER",
    "OCTOBER",
    "NOVEMBER",
    "DECEMBER",
)
# directive -> capture-group name (None: matched and ignored)
_NUMERIC = {"d": "day", "m": "month", "H": None, "M": None, "S": None}
_SUPPORTED = "%Y %m %d %b %B %H %M %S %%"


@dataclass(frozen=True)
class DateFormat:
    """A strftime format compiled to an anchored regex with named groups."""

    format: str
    regex: str
    groups: tuple[str, ...]  # subset of year, month, month_name, day (in the order they occur)
    precision: str  # day, month or year


def compile_format(fmt: str) -> DateFormat:
    """Compile a strftime format into a strict regular expression.

    Raises:
        ValueError: the format uses a directive that is not supported, repeats a part, or lacks
            a year (``%y`` is refused: a two-digit year is ambiguous for a date of birth).
    """
    tokens: list[tuple[str, str]] = []  # ("lit", char) or ("dir", letter)
    i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            if i + 1 >= len(fmt):
                raise ValueError(f"date format {fmt!r} ends with a lone '%'")
            d = fmt[i + 1]
            tokens.append(("lit", "%") if d == "%" else ("dir", d))
            i += 2
        else:
            tokens.append(("lit", fmt[i]))
            i += 1

    parts: list[str] = []
    groups: list[str] = []
    for k, (kind, val) in enumerate(tokens):
        if kind == "lit":
            parts.append(re.escape(val))
            continue
        if val == "Y":
            name, body = "year", "[0-9]{4}"
        elif val in ("b", "B"):
            name = "month_name"
            body = "[A-Z]{3}" if val == "b" else "[A-Z]{3,9}"
        elif val in _NUMERIC:
            prev_lit = k == 0 or tokens[k - 1][0] == "lit"
            next_lit = k == len(tokens) - 1 or tokens[k + 1][0] == "lit"
            body = "[0-9]{1,2}" if prev_lit and next_lit else "[0-9]{2}"
            name = _NUMERIC[val]  # type: ignore[assignment]
        else:
            raise ValueError(
                f"date format {fmt!r}: directive %{val} is not supported (use {_SUPPORTED})"
            )
        if name is None:
            parts.append(f"(?:{body})")
            continue
        if (
            name in groups
            or (name == "month_name" and "month" in groups)
            or (name == "month" and "month_name" in groups)
        ):
            raise ValueError(f"date format {fmt!r} gives the {name.replace('_name', '')} twice")
        groups.append(name)
        parts.append(f"(?<{name}>{body})")

    if "year" not in groups:
        raise ValueError(f"date format {fmt!r} has no %Y (four-digit year)")
    has_month = "month" in groups or "month_name" in groups
    if "day" in groups and not has_month:
        raise ValueError(f"date format {fmt!r} has a day but no month")
    precision = "day" if "day" in groups else "month" if has_month else "year"
    return DateFormat(fmt, "^" + "".join(parts) + "$", tuple(groups), precision)


def _days_in_month(year: pl.Expr, month: pl.Expr) -> pl.Expr:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    return (
        pl.when(month == 2)
        .then(pl.lit(28, dtype=pl.Int32) + leap.cast(pl.Int32))
        .when(month.is_in([4, 6, 9, 11]))
        .then(pl.lit(30, dtype=pl.Int32))
        .otherwise(pl.lit(31, dtype=pl.Int32))
    )


def parse_dob(
    expr: pl.Expr,
    fmt: str,
    *,
    today: date | None = None,
    earliest: date = EARLIEST_DOB,
) -> pl.Expr:
    """Parse a date of birth strictly with ``fmt``; null and flag what cannot be used.

    Returns a struct with the fields ``date_of_birth`` (Date), ``dob_precision`` (``day``,
    ``month``, ``year``, or null with no date) and ``dob_flag``; other fields start with ``_``.
    Flags (one at most, in this priority): ``dob_unparseable`` (non-empty but not a date in that
    format), ``dob_placeholder`` (:data:`~linkage.standardise.placeholders.DOB_PLACEHOLDERS`),
    ``dob_out_of_range`` (before ``earliest`` or after ``today``, default ``date.today()``).

    Example:
        >>> s = parse_dob(pl.col("d"), "%m%d%Y", today=date(2024, 1, 1))
        >>> df = pl.DataFrame({"d": ["03141985", "02302021", "01011900", "1231990"]})
        >>> for row in df.select(s.struct.field("date_of_birth", "dob_flag")).rows():
        ...     print(row)
        (datetime.date(1985, 3, 14), None)
        (None, 'dob_unparseable')
        (None, 'dob_placeholder')
        (None, 'dob_unparseable')
    """
    spec = compile_format(fmt)
    today = today or date.today()
    int32 = pl.Int32

    def part(name: str) -> pl.Expr:
        return pl.field("_parts").struct.field(name).cast(int32, strict=False)

    if "month" in spec.groups:
        month = part("month")
    elif "month_name" in spec.groups:
        names = _MONTH_ABBR if "%b" in fmt else _MONTH_FULL
        month = (
            pl.field("_parts")
            .struct.field("month_name")
            .replace_strict(list(names), list(range(1, 13)), default=None, return_dtype=int32)
        )
    else:
        month = pl.lit(1, dtype=int32)

    y, m, d = pl.field("_y"), pl.field("_m"), pl.field("_d")
    valid = pl.field("_valid")
    parsed = pl.field("_parsed")
    return (
        pl.struct(_raw=clean_source(expr))
        .struct.with_fields(
            _parts=pl.field("_raw").str.to_uppercase().str.extract_groups(spec.regex)
        )
        .struct.with_fields(
            _y=part("year"),
            _m=month,
            _d=part("day") if "day" in spec.groups else pl.lit(1, dtype=int32),
        )
        .struct.with_fields(
            _valid=(
                (y >= 1) & m.is_between(1, 12) & (d >= 1) & (d <= _days_in_month(y, m))
            ).fill_null(False)
        )
        .struct.with_fields(
            # pl.date raises on 2021-02-30 (even in a branch ``when`` does not take), so the date
            # is built from safe parts and kept only where the parts were valid
            _parsed=pl.when(valid).then(
                pl.date(
                    pl.when(valid).then(y).otherwise(2000),
                    pl.when(valid).then(m).otherwise(1),
                    1,
                )
                + pl.duration(days=pl.when(valid).then(d).otherwise(1) - 1)
            )
        )
        .struct.with_fields(
            _placeholder=parsed.is_in(list(DOB_PLACEHOLDERS)).fill_null(False),
            _out_of_range=((parsed < pl.lit(earliest)) | (parsed > pl.lit(today))).fill_null(False),
        )
        .struct.with_fields(
            date_of_birth=pl.when(
                valid & ~pl.field("_placeholder") & ~pl.field("_out_of_range")
            ).then(parsed),
            dob_flag=first_flag(
                (pl.field("_raw").is_not_null() & ~valid, "dob_unparseable"),
                (pl.field("_placeholder"), "dob_placeholder"),
                (pl.field("_out_of_range"), "dob_out_of_range"),
            ),
        )
        .struct.with_fields(
            dob_precision=pl.when(pl.field("date_of_birth").is_not_null()).then(
                pl.lit(spec.precision)
            )
        )
    )


def std_dob(expr: pl.Expr, fmt: str, *, today: date | None = None) -> pl.Expr:
    """The usable date of birth alone (null if absent, unparseable, placeholder or out of range)."""
    return parse_dob(expr, fmt, today=today).struct.field("date_of_birth")
