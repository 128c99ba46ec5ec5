"""Coded values (sex) mapped through the agency's code map."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from linkage.standardise.text import clean_source


def map_codes(expr: pl.Expr, codes: Mapping[str, str | None], *, flag: str) -> pl.Expr:
    """Map source codes to canonical values: a struct with fields ``value`` and ``flag``.

    The stripped source value is looked up exactly first, then case-insensitively (a
    case-insensitive key is used only when every source key with that spelling agrees). A code
    mapped to null (``Unknown: null``) is a known "not stated" and is not flagged; a non-empty
    value missing from the map is nulled and flagged with ``flag`` (bad-inputs D10).

    Example:
        >>> s = map_codes(pl.col("s"), {"1": "M", "2": "F", "9": None}, flag="sex_unmapped")
        >>> df = pl.DataFrame({"s": [" 1", "9", "7", None]})
        >>> df.select(s.struct.field("value", "flag")).rows()
        [('M', None), (None, None), (None, 'sex_unmapped'), (None, None)]
    """
    folded: dict[str, set[str | None]] = {}
    for k, v in codes.items():
        folded.setdefault(k.strip().upper(), set()).add(v)
    ci = {k: next(iter(vs)) for k, vs in folded.items() if len(vs) == 1}

    raw, upper = pl.field("_raw"), pl.field("_upper")
    in_exact = raw.is_in(list(codes)).fill_null(False) if codes else pl.lit(False)
    in_ci = upper.is_in(list(ci)).fill_null(False) if ci else pl.lit(False)
    value = pl.lit(None, dtype=pl.String)
    if ci:
        value = pl.when(in_ci).then(
            upper.replace_strict(list(ci), list(ci.values()), default=None, return_dtype=pl.String)
        )
    if codes:
        exact = raw.replace_strict(
            list(codes), list(codes.values()), default=None, return_dtype=pl.String
        )
        value = pl.when(in_exact).then(exact).otherwise(value)
    return (
        pl.struct(_raw=clean_source(expr))
        .struct.with_fields(_upper=raw.str.to_uppercase())
        .struct.with_fields(_known=in_exact | in_ci, value=value)
        .struct.with_fields(
            flag=pl.when(raw.is_not_null() & ~pl.field("_known")).then(pl.lit(flag))
        )
    )


def map_sex(expr: pl.Expr, codes: Mapping[str, str | None]) -> pl.Expr:
    """Sex through the agency's code map: struct of ``value`` (M/F/X or null) and ``flag``
    (``sex_unmapped`` or null)."""
    return map_codes(expr, codes, flag="sex_unmapped")
