"""Addresses: one or more source columns combined into one standardised line.

Decisions:

* Punctuation becomes a space (``10-12 High St.`` -> ``10 12 HIGH ST``), apostrophes are deleted
  (``St John's`` -> ``ST JOHNS``), accents folded, digits kept.
* A component that is a placeholder on its own (``flat = NONE``, ``N/A``) is skipped when the
  columns are combined, silently: the rest of the address is good.
* Street types are written one way, abbreviated as whole words (``Station Road`` and ``Station
  Rd`` -> ``STATION RD``; see ``STREET_TYPES``): agencies abbreviate differently, and an address
  is compared and blocked on as a whole. Only full words are contracted, so ``ST`` (saint or
  street) is never guessed at.
* "No fixed abode" (NFA, NO FIXED ABODE, ... anywhere, as whole words) nulls the whole address: what
  is left (a town) is not an address and is shared by many people.
* ``address_placeholder`` is flagged when the source held something but the address ends up null
  (NFA, or every component a placeholder or punctuation).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import polars as pl

from linkage.standardise.placeholders import (
    ADDRESS_PLACEHOLDERS,
    NO_FIXED_ABODE_PATTERNS,
    whole_value_regex,
)
from linkage.standardise.text import blank_to_null, clean_source, fold_upper

_PLACEHOLDER_RE = whole_value_regex(ADDRESS_PLACEHOLDERS)

#: Street types as written in full (and in rarer abbreviations) -> the usual abbreviation.
STREET_TYPES = {
    "ROAD": "RD",
    "STREET": "ST",
    "AVENUE": "AVE",
    "AV": "AVE",
    "LANE": "LN",
    "CLOSE": "CL",
    "DRIVE": "DR",
    "CRESCENT": "CRES",
    "CRESC": "CRES",
    "GROVE": "GR",
    "GARDENS": "GDNS",
    "PLACE": "PL",
    "TERRACE": "TERR",
    "TCE": "TERR",
    "COURT": "CT",
    "SQUARE": "SQ",
    "PARADE": "PDE",
}
_NFA_RE = r"(?:^| )(?:" + "|".join(NO_FIXED_ABODE_PATTERNS) + r")(?: |$)"


def std_address(expr: pl.Expr) -> pl.Expr:
    """Standardise address text: upper-case letters and digits, single spaces. Idempotent.

    Example:
        >>> s = pl.Series(["Flat 2, 10-12 St. John’s Road ", "  "])
        >>> pl.select(std_address(pl.lit(s))).to_series().to_list()
        ['FLAT 2 10 12 ST JOHNS RD', None]
    """
    return blank_to_null(_street_types(_std_address_keep_empty(expr)))


def _std_address_keep_empty(expr: pl.Expr) -> pl.Expr:
    return fold_upper(expr).str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars(" ")


_WORDS = [f" {w} " for w in STREET_TYPES]
_SHORT = [f" {s} " for s in STREET_TYPES.values()]


def _street_types(std: pl.Expr) -> pl.Expr:
    """A standardised address with its street types abbreviated (whole words only)."""
    padded = pl.concat_str([pl.lit(" "), std, pl.lit(" ")])
    # One pass per word in a row of street types ("CLOSE ROAD"): matches cannot share a space.
    return (
        padded.str.replace_many(_WORDS, _SHORT).str.replace_many(_WORDS, _SHORT).str.strip_chars()
    )


def is_address_placeholder(expr: pl.Expr) -> pl.Expr:
    """Whether a standardised address (or component) is a placeholder or says "no fixed abode"."""
    return (expr.str.contains(_PLACEHOLDER_RE) | expr.str.contains(_NFA_RE)).fill_null(False)


def combine_address(columns: Sequence[pl.Expr], separator: str = " ") -> pl.Expr:
    """Combine address columns into one standardised address.

    Returns a struct with the fields ``address`` and ``address_flag`` (``address_placeholder`` or
    null); other fields start with ``_``.

    Example:
        >>> df = pl.DataFrame({"flat": ["NONE", None], "street": ["1 High St", "NFA"],
        ...                    "town": ["Leeds", "Leeds"]})
        >>> s = combine_address([pl.col("flat"), pl.col("street"), pl.col("town")])
        >>> df.select(s.struct.field("address", "address_flag")).rows()
        [('1 HIGH ST LEEDS', None), (None, 'address_placeholder')]
    """
    n = len(columns)
    raws = {f"_raw{i}": clean_source(c) for i, c in enumerate(columns)}
    stds = {
        f"_std{i}": blank_to_null(_std_address_keep_empty(pl.field(f"_raw{i}"))) for i in range(n)
    }
    kept = [
        pl.when(~is_address_placeholder(pl.field(f"_std{i}"))).then(pl.field(f"_std{i}"))
        for i in range(n)
    ]
    combined = pl.field("_combined")
    if separator and not re.search(r"[^\W_]", separator):
        # A separator of punctuation and spaces standardises to one space, so the standardised
        # components can be joined directly: the same result (short of contrived Unicode, such as
        # a component starting with a combining mark) for a third of the work.
        joined = pl.concat_str(kept, separator=" ", ignore_nulls=True)
    else:
        # "" or a separator with letters or digits: join as configured, then standardise
        joined = _std_address_keep_empty(
            pl.concat_str(kept, separator=separator, ignore_nulls=True)
        )
    return (
        pl.struct([e.alias(k) for k, e in raws.items()])
        .struct.with_fields(**stds)
        .struct.with_fields(
            # the separator is joined before standardising, as configured (so ", " also works)
            _combined=blank_to_null(_street_types(joined)),
            _nfa=pl.any_horizontal(
                [pl.field(f"_std{i}").str.contains(_NFA_RE).fill_null(False) for i in range(n)]
            ),
            _any=pl.any_horizontal([pl.field(f"_raw{i}").is_not_null() for i in range(n)]),
        )
        .struct.with_fields(
            _bad=pl.field("_nfa") | is_address_placeholder(combined) | combined.is_null()
        )
        .struct.with_fields(
            address=pl.when(~pl.field("_bad")).then(combined),
            address_flag=pl.when(pl.field("_any") & pl.field("_bad")).then(
                pl.lit("address_placeholder")
            ),
        )
    )
