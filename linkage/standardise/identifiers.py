"""Identifiers (NHS number, National Insurance number, agency numbers): normalised and validated.

Each checker returns ``(value, flag-or-null)``. Flags are named after the *scheme* key in the
project configuration (``<scheme>_invalid``, ``<scheme>_placeholder``, ``<scheme>_test_range``), so
any scheme gets them whatever it is called. An identifier that fails is nulled but the record is
kept (bad-inputs D1-D4).
"""

from __future__ import annotations

import polars as pl

from linkage.standardise.placeholders import (
    IDENTIFIER_PLACEHOLDERS,
    NHS_NUMBER_PLACEHOLDERS,
    NHS_NUMBER_TEST_PREFIX,
    NI_NUMBER_PLACEHOLDER_PREFIXES,
    NI_NUMBER_PLACEHOLDERS,
)
from linkage.standardise.text import blank_to_null, first_flag

NI_NUMBER_RE = r"^[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z][0-9]{6}[A-D]$"
#: Prefixes never allocated (TN is the temporary-number prefix, not a person's number).
NI_NUMBER_EXCLUDED_PREFIXES: tuple[str, ...] = ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ")


def _compact(expr: pl.Expr, remove: str = r"[\s\p{Cf}\p{Cc}]+") -> pl.Expr:
    """NFKC (full-width digits become ASCII), upper case, ``remove`` deleted, empty -> null."""
    return blank_to_null(
        expr.cast(pl.String).str.normalize("NFKC").str.to_uppercase().str.replace_all(remove, "")
    )


def nhs_check_digit_ok(digits: pl.Expr) -> pl.Expr:
    """Modulus-11 check of a 10-digit string expression (null where not 10 digits).

    Weights 10..2 over the first nine digits; check = 11 - (sum mod 11), 11 -> 0, 10 -> invalid.
    Vectorised: the number is parsed once and its digits taken arithmetically.

    Example:
        >>> s = pl.Series(["9434765919", "9434765918", "12345"])
        >>> pl.select(nhs_check_digit_ok(pl.lit(s))).to_series().to_list()
        [True, False, None]
    """
    return (
        pl.struct(
            _n=pl.when(digits.str.contains(r"^[0-9]{10}$"))
            .then(digits)
            .cast(pl.Int64, strict=False)
        )
        .struct.with_fields(
            _total=pl.sum_horizontal(
                [(pl.field("_n") // 10 ** (9 - i)) % 10 * (10 - i) for i in range(9)]
            ),
        )
        .struct.with_fields(_check=11 - pl.field("_total") % 11)
        .struct.with_fields(
            _ok=(pl.field("_check") != 10)
            & (pl.field("_check") % 11 == pl.field("_n") % 10)  # 11 -> 0
        )
        .struct.field("_ok")
    )


def check_nhs_number(expr: pl.Expr, *, scheme: str = "nhs_number") -> pl.Expr:
    """Validate an NHS number; spaces and hyphens are removed first (``943 476 5919``).

    Returns a struct with ``value`` (10 digits or null) and ``flag``. Order of flags:
    ``<scheme>_invalid`` (not 10 digits), ``<scheme>_placeholder`` (repdigits, which pass modulus
    11), ``<scheme>_test_range`` (999...), ``<scheme>_invalid`` (check digit).

    Example:
        >>> s = check_nhs_number(pl.col("n"))
        >>> df = pl.DataFrame({"n": ["943-476-5919", "9434765918", "0000000000"]})
        >>> df.select(s.struct.field("value", "flag")).rows()
        [('9434765919', None), (None, 'nhs_number_invalid'), (None, 'nhs_number_placeholder')]
    """
    s = pl.field("_s")
    return (
        pl.struct(_s=_compact(expr, r"[\s\p{Cf}\p{Cc}\p{Pd}]+"))
        .struct.with_fields(
            _well_formed=s.str.contains(r"^[0-9]{10}$").fill_null(False),
            _placeholder=s.is_in(list(NHS_NUMBER_PLACEHOLDERS)).fill_null(False),
            _test=s.str.starts_with(NHS_NUMBER_TEST_PREFIX).fill_null(False),
            _check_ok=nhs_check_digit_ok(s).fill_null(False),
        )
        .struct.with_fields(
            value=pl.when(
                pl.field("_well_formed")
                & ~pl.field("_placeholder")
                & ~pl.field("_test")
                & pl.field("_check_ok")
            ).then(s),
            flag=first_flag(
                (s.is_not_null() & ~pl.field("_well_formed"), f"{scheme}_invalid"),
                (pl.field("_placeholder"), f"{scheme}_placeholder"),
                (pl.field("_test"), f"{scheme}_test_range"),
                (s.is_not_null() & ~pl.field("_check_ok"), f"{scheme}_invalid"),
            ),
        )
    )


def check_ni_number(expr: pl.Expr, *, scheme: str = "ni_number") -> pl.Expr:
    """Validate a National Insurance number (``AB 12 34 56 C`` -> ``AB123456C``).

    Returns a struct with ``value`` and ``flag``. ``<scheme>_placeholder``: the QQ example prefix,
    well-known examples, six identical digits. ``<scheme>_invalid``: anything else that does not
    match :data:`NI_NUMBER_RE` or uses an unallocated prefix. The suffix letter is required.

    Example:
        >>> s = check_ni_number(pl.col("n"))
        >>> df = pl.DataFrame({"n": ["ab 65 43 21 c", "QQ123456C", "GB123456A"]})
        >>> df.select(s.struct.field("value", "flag")).rows()
        [('AB654321C', None), (None, 'ni_number_placeholder'), (None, 'ni_number_invalid')]
    """
    s = pl.field("_s")
    prefix = s.str.slice(0, 2)
    repeated_digits = "|".join(str(d) * 6 for d in range(10))
    return (
        pl.struct(_s=_compact(expr, r"[\s\p{Cf}\p{Cc}\p{Pd}]+"))
        .struct.with_fields(
            _placeholder=(
                prefix.is_in(list(NI_NUMBER_PLACEHOLDER_PREFIXES))
                | s.is_in(list(NI_NUMBER_PLACEHOLDERS))
                | s.str.contains(rf"^[A-Z]{{2}}(?:{repeated_digits})[A-Z]?$")
            ).fill_null(False),
            _valid=(
                s.str.contains(NI_NUMBER_RE) & ~prefix.is_in(list(NI_NUMBER_EXCLUDED_PREFIXES))
            ).fill_null(False),
        )
        .struct.with_fields(
            value=pl.when(pl.field("_valid") & ~pl.field("_placeholder")).then(s),
            flag=first_flag(
                (pl.field("_placeholder"), f"{scheme}_placeholder"),
                (s.is_not_null() & ~pl.field("_valid"), f"{scheme}_invalid"),
            ),
        )
    )


def check_plain_identifier(expr: pl.Expr, *, scheme: str) -> pl.Expr:
    """An identifier with no validation rule: upper case, all spaces removed, empty -> null.

    Returns a struct with ``value`` and ``flag``. Values that mean "unknown" (``UNKNOWN``,
    ``N/A``, ``0000``, ``-``) are nulled and flagged ``<scheme>_placeholder``: one such value
    shared by many records would link them all.

    Example:
        >>> s = check_plain_identifier(pl.col("n"), scheme="pnc_id")
        >>> df = pl.DataFrame({"n": [" 2001/12 34a ", "N/A", "  "]})
        >>> df.select(s.struct.field("value", "flag")).rows()
        [('2001/1234A', None), (None, 'pnc_id_placeholder'), (None, None)]
    """
    s = pl.field("_s")
    return (
        pl.struct(_s=_compact(expr))
        .struct.with_fields(
            _placeholder=(
                s.is_in(list(IDENTIFIER_PLACEHOLDERS))
                | s.str.contains(r"^0+$")
                | s.str.contains(r"^[^\p{L}\p{N}]+$")
            ).fill_null(False)
        )
        .struct.with_fields(
            value=pl.when(~pl.field("_placeholder")).then(s),
            flag=pl.when(pl.field("_placeholder")).then(pl.lit(f"{scheme}_placeholder")),
        )
    )


#: Police National Computer check characters, indexed by (2-digit year * 10^7 + serial) mod 23.
PNC_CHECK_LETTERS = "ZABCDEFGHJKLMNPQRTUVWXY"
_PNC_RE = r"^([0-9]{2}|[0-9]{4})/([0-9]{1,7})([A-Z])$"


def check_pnc(expr: pl.Expr, *, scheme: str, pivot_year: int | None = None) -> pl.Expr:
    """A PNC id in its full ``YYYY/NNNNNNNX`` form, from the full or the short ``YY/NNNNNX`` form.

    A two-digit year at or below ``pivot_year`` (default: this year) mod 100 is 20YY, else 19YY.
    The check letter must match; otherwise the value is nulled and flagged ``<scheme>_invalid``.

    Example:
        >>> s = check_pnc(pl.col("p"), scheme="pnc_id", pivot_year=2026)
        >>> df = pl.DataFrame({"p": ["2004/0123456B", "04/123456B", "04/123456A", "junk"]})
        >>> df.select(s.struct.field("value", "flag")).rows()  # doctest: +NORMALIZE_WHITESPACE
        [('2004/0123456B', None), ('2004/0123456B', None),
         (None, 'pnc_id_invalid'), (None, 'pnc_id_invalid')]
    """
    from datetime import date

    pivot = (pivot_year or date.today().year) % 100
    s = pl.field("_s")
    year = s.str.extract(_PNC_RE, 1)
    yy = year.str.tail(2).cast(pl.Int64)
    serial = s.str.extract(_PNC_RE, 2).cast(pl.Int64)
    letter = s.str.extract(_PNC_RE, 3)
    full_year = (
        pl.when(year.str.len_chars() == 4)
        .then(year)
        .when(yy <= pivot)
        .then(pl.lit("20") + year)
        .otherwise(pl.lit("19") + year)
    )
    index = (yy * 10_000_000 + serial) % 23
    expected_letter = pl.lit(PNC_CHECK_LETTERS).str.slice(index, 1)
    return (
        pl.struct(_s=_compact(expr))
        .struct.with_fields(
            _ok=(letter == expected_letter).fill_null(False),
            _placeholder=(
                s.is_in(list(IDENTIFIER_PLACEHOLDERS)) | s.str.contains(r"^[^\p{L}\p{N}]+$")
            ).fill_null(False),
        )
        .struct.with_fields(
            value=pl.when(pl.field("_ok")).then(
                pl.concat_str([full_year, pl.lit("/"), serial.cast(pl.String).str.zfill(7), letter])
            ),
            flag=first_flag(
                (pl.field("_placeholder"), f"{scheme}_placeholder"),
                (s.is_not_null() & ~pl.field("_ok"), f"{scheme}_invalid"),
            ),
        )
    )


def check_identifier(expr: pl.Expr, *, scheme: str, validation: str) -> pl.Expr:
    """Dispatch on the scheme's ``validation`` (``nhs_number``, ``ni_number`` or ``none``).

    Returns a struct with the fields ``value`` and ``flag`` (other fields start with ``_``).
    """
    if validation == "nhs_number":
        return check_nhs_number(expr, scheme=scheme)
    if validation == "ni_number":
        return check_ni_number(expr, scheme=scheme)
    if validation == "pnc":
        return check_pnc(expr, scheme=scheme)
    if validation == "none":
        return check_plain_identifier(expr, scheme=scheme)
    raise ValueError(
        f"identifier scheme {scheme!r}: unknown validation {validation!r} "
        "(use nhs_number, ni_number, pnc or none)"
    )


def std_identifier(expr: pl.Expr, validation: str, *, scheme: str = "id") -> pl.Expr:
    """The validated identifier alone (null when absent, invalid or a placeholder)."""
    return check_identifier(expr, scheme=scheme, validation=validation).struct.field("value")
