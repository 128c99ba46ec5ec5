"""Text building blocks shared by the name, address and identifier standardisers.

Every function takes and returns a polars expression of strings, so it runs vectorised (no Python
per row) and can be tried on a Series: ``pl.select(std_text(pl.lit(series)))``.

A note on how the checkers are built: a polars expression that uses an intermediate result twice
evaluates it twice (and common-subexpression elimination does not reach inside ``when/then``), so
a checker that derives a value, a flag and a placeholder test from one standardised string would
redo the expensive Unicode work many times over. The checkers therefore compute in steps inside a
struct (``pl.struct(...).struct.with_fields(...)``, reading earlier steps with ``pl.field``): each
step runs once, and the result is one struct expression whose fields are the outputs.
"""

from __future__ import annotations

import polars as pl

#: Apostrophe-like characters removed inside words (O'BRIEN, O’BRIEN, O`BRIEN, OʼBRIEN -> OBRIEN).
APOSTROPHES = "'’‘`´ʼʹ′‛"

#: Letters that Unicode does not decompose into a base letter plus accents, folded by hand.
#: Applied after upper-casing, so only capitals are listed.
LETTER_FOLDS: dict[str, str] = {
    "Æ": "AE",
    "Œ": "OE",
    "Ø": "O",
    "Ł": "L",
    "Đ": "D",
    "Ð": "D",
    "Þ": "TH",
    "ẞ": "SS",
    "Ħ": "H",
    "Ŧ": "T",
    "Ŋ": "N",
    "Ŀ": "L",
    "Ɨ": "I",
    "Ƶ": "Z",
    "Ǥ": "G",
}

#: Cyrillic and Greek capitals that look like Latin ones (after upper-casing), the idea of the
#: Unicode TR39 "skeleton". Applied only to values that also hold a Latin letter, so a spoofed or
#: mistyped ``JОHN`` (Cyrillic О) becomes ``JOHN`` while a name written wholly in Cyrillic or
#: Greek (``ИВАН``) is left as written.
CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "А": "A",
    "В": "B",
    "Е": "E",
    "К": "K",
    "М": "M",
    "Н": "H",
    "О": "O",
    "Р": "P",
    "С": "C",
    "Т": "T",
    "У": "Y",
    "Х": "X",
    "І": "I",
    "Ј": "J",
    "Ѕ": "S",
    "Ԛ": "Q",
    "Ԝ": "W",
    # Greek
    "Α": "A",
    "Β": "B",
    "Ε": "E",
    "Ζ": "Z",
    "Η": "H",
    "Ι": "I",
    "Κ": "K",
    "Μ": "M",
    "Ν": "N",
    "Ο": "O",
    "Ρ": "P",
    "Τ": "T",
    "Υ": "Y",
    "Χ": "X",
}

# After NFKD: combining marks (with the space NFKD puts before a spacing accent such as ´),
# invisible format characters (zero-width space, soft hyphen, BOM) and apostrophes are deleted.
_DELETE_AFTER_NFKD = r"(?: ?\p{M})+|[\p{Cf}" + APOSTROPHES + "]+"


def blank_to_null(expr: pl.Expr) -> pl.Expr:
    """Turn empty strings into null (the input is expected to be stripped already)."""
    # ``replace`` reads ``expr`` once; ``when(expr != "").then(expr)`` would evaluate it twice
    return expr.replace("", None)


def clean_source(expr: pl.Expr) -> pl.Expr:
    """A raw source value as text: stripped, with empty or whitespace-only values as null."""
    return blank_to_null(expr.cast(pl.String).str.strip_chars())


def std_text(expr: pl.Expr) -> pl.Expr:
    """Standardise free text: NFKC, invisible characters removed, single spaces, upper case.

    This is the one place where the generic rules of bad-inputs D11 live (Unicode confusables such
    as full-width letters, trailing and repeated spaces, case). Empty results are null.

    Example:
        >>> pl.select(std_text(pl.lit(pl.Series(["  ｊｏｈｎ\\t smith  "])))).item()
        'JOHN SMITH'
    """
    out = (
        expr.cast(pl.String)
        .str.normalize("NFKC")
        .str.replace_all(r"\p{Cf}+", "")
        .str.replace_all(r"[\s\p{Cc}]+", " ")
        .str.strip_chars(" ")
        .str.to_uppercase()
        # upper-casing can produce a sequence that NFKC composes (e.g. Greek with two accents):
        # normalising again keeps the function idempotent
        .str.normalize("NFKC")
    )
    return blank_to_null(out)


def fold_upper(expr: pl.Expr) -> pl.Expr:
    """Upper case with accents folded and apostrophes deleted: ``Zoë O’Brien`` -> ``ZOE OBRIEN``.

    NFKD first (compatibility forms such as full-width letters and ligatures become plain letters;
    accented letters split into a base letter and combining marks), then marks, invisible format
    characters and apostrophes are deleted, then upper case, then the few letters Unicode does not
    decompose are folded by :data:`LETTER_FOLDS`, and look-alike Cyrillic and Greek capitals in a
    value that also holds Latin letters are mapped by :data:`CONFUSABLES`. Punctuation and spacing
    are left to the caller.
    """
    folded = (
        expr.cast(pl.String)
        .str.normalize("NFKD")
        .str.replace_all(_DELETE_AFTER_NFKD, "")
        .str.to_uppercase()
        .str.replace_many(list(LETTER_FOLDS), list(LETTER_FOLDS.values()))
    )
    s = pl.field("_s")
    return (
        pl.struct(_s=folded)
        .struct.with_fields(
            _out=pl.when(s.str.contains("[A-Z]"))
            .then(s.str.replace_many(list(CONFUSABLES), list(CONFUSABLES.values())))
            .otherwise(s)
        )
        .struct.field("_out")
    )


def fold_accents(expr: pl.Expr) -> pl.Expr:
    """Remove accents (and apostrophes) from text and upper-case it: É -> E, Ø -> O, Æ -> AE."""
    return fold_upper(expr)


def first_flag(*cases: tuple[pl.Expr, str]) -> pl.Expr:
    """The name of the first case whose condition holds, else null (a String expression)."""
    out = pl.lit(None, dtype=pl.String)
    for cond, name in reversed(cases):
        out = pl.when(cond).then(pl.lit(name)).otherwise(out)
    return out
