"""UK postcodes: validated and written in the standard ``OUTWARD INWARD`` form.

The pattern is the structural one (outward: 1-2 letters, a digit, then an optional letter or digit;
inward: a digit and two letters; plus the special ``GIR 0AA``). It does not check the finer rules on
which letters may appear where, so a well-formed but unallocated postcode is kept: comparing it
costs little, and rejecting real ones would cost more.

The NHS pseudo-postcodes ``ZZ99 xxx`` (no fixed abode, not known, abroad) match the pattern but are
placeholders: they are nulled and flagged ``postcode_placeholder``.
"""

from __future__ import annotations

import polars as pl

from linkage.standardise.text import blank_to_null, first_flag

#: Whole postcode with spaces removed.
POSTCODE_RE = r"^(?:[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}|GIR0AA)$"
#: A standardised postcode (with its single space) matches this.
FORMATTED_POSTCODE_RE = r"^(?:[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}|GIR 0AA)$"
_PSEUDO_RE = r"^ZZ99[0-9][A-Z]{2}$"


def _compact(expr: pl.Expr) -> pl.Expr:
    """NFKC, upper case, every space (and invisible character) removed; empty -> null."""
    return blank_to_null(
        expr.cast(pl.String)
        .str.normalize("NFKC")
        .str.to_uppercase()
        .str.replace_all(r"[\s\p{Cf}\p{Cc}]+", "")
    )


def check_postcode(expr: pl.Expr, postcode_format: str = "uk") -> pl.Expr:
    """A struct with ``postcode`` (``OUTWARD INWARD`` or null), ``postcode_district`` and
    ``postcode_flag`` (``postcode_invalid``, ``postcode_placeholder`` for ZZ99, or null).

    With ``postcode_format="other"`` (a non-UK source) the code is only normalised (upper case,
    spaces removed), has no district, and is nulled only when it holds no letter or digit.

    Example:
        >>> s = check_postcode(pl.col("p"))
        >>> df = pl.DataFrame({"p": ["ls62ab", " sw1a 1aa", "LS6", "ZZ99 3VZ"]})
        >>> out = ("postcode", "postcode_district", "postcode_flag")
        >>> for row in df.select(s.struct.field(*out)).rows():
        ...     print(row)
        ('LS6 2AB', 'LS6', None)
        ('SW1A 1AA', 'SW1A', None)
        (None, None, 'postcode_invalid')
        (None, None, 'postcode_placeholder')
    """
    compact = pl.field("_compact")
    if postcode_format == "other":
        usable = compact.str.contains(r"[A-Z0-9]").fill_null(False)
        return pl.struct(_compact=_compact(expr)).struct.with_fields(
            postcode=pl.when(usable).then(compact),
            postcode_district=pl.lit(None, dtype=pl.String),
            postcode_flag=pl.when(compact.is_not_null() & ~usable).then(pl.lit("postcode_invalid")),
        )
    ok = pl.field("_valid") & ~pl.field("_pseudo")
    return (
        pl.struct(_compact=_compact(expr))
        .struct.with_fields(
            _valid=compact.str.contains(POSTCODE_RE).fill_null(False),
            _pseudo=compact.str.contains(_PSEUDO_RE).fill_null(False),
        )
        .struct.with_fields(
            postcode=pl.when(ok).then(
                pl.concat_str([compact.str.head(-3), pl.lit(" "), compact.str.tail(3)])
            ),
            postcode_district=pl.when(ok).then(compact.str.head(-3)),
            postcode_flag=first_flag(
                (pl.field("_pseudo"), "postcode_placeholder"),
                (compact.is_not_null() & ~pl.field("_valid"), "postcode_invalid"),
            ),
        )
    )


def std_postcode(expr: pl.Expr) -> pl.Expr:
    """The postcode in ``OUTWARD INWARD`` form, or null. Idempotent.

    Example:
        >>> s = pl.Series(["ls62ab", "gir0aa", "12345", None])
        >>> pl.select(std_postcode(pl.lit(s))).to_series().to_list()
        ['LS6 2AB', 'GIR 0AA', None, None]
    """
    return check_postcode(expr).struct.field("postcode")


def postcode_district(postcode: pl.Expr) -> pl.Expr:
    """The outward part (``LS6``) of a *standardised* postcode."""
    return postcode.str.extract(r"^(\S+) ")
