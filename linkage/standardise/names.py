"""Person names standardised for comparison: titles and placeholders removed, full names split.

Decisions (each is tested in ``tests/test_standardise.py``):

* **Hyphens join**: ``SMITH-JONES`` -> ``SMITHJONES``, ``JEAN-PAUL`` -> ``JEANPAUL`` (with any
  spaces around the hyphen). A double-barrelled name stays *one token*, so splitting a full name
  on spaces (last token = family name) and splitting a given-name field (first token = given
  name) never cut it in half; and ``SMITHJONES`` stays close to ``SMITH JONES`` (DuckDB
  Jaro-Winkler 0.98) and to ``SMITH`` (0.90) for a source that dropped the second part.
  Turning the hyphen into a space instead would move ``JONES`` out of the family name of
  ``Mary Smith-Jones`` and ``PAUL`` out of the given name of ``Jean-Paul``. This is also what
  ``schemas/canonical.py`` documents ("hyphens and apostrophes removed").
* **Apostrophes are deleted**, not spaced: ``O'Brien``, ``O’Brien`` -> ``OBRIEN``.
* Accents are folded (``Zoë`` -> ``ZOE``); digits and any other punctuation become spaces, then
  spaces are collapsed (``J.SMITH`` -> ``J SMITH``, ``TWIN 1`` -> ``TWIN``). Letters of other
  scripts are kept (upper-cased where the script has case), never dropped.
* Titles (:data:`~linkage.standardise.placeholders.NAME_TITLES`) are stripped from the start of
  given names and full names only; a family name ``DR`` is left alone.
* A name that is non-empty in the source but standardises to nothing (``?``, ``-``, ``123``, ``MR``)
  is treated like a placeholder: null, with the ``<field>_placeholder`` flag.
* A full name with a comma is read as ``FAMILY, GIVEN MIDDLE`` (common in police and court
  systems); otherwise the last token is the family name. A single-token full name is taken as the
  family name only (given name null): putting the same token in both fields would count one piece
  of evidence twice.
"""

from __future__ import annotations

import polars as pl

from linkage.standardise.placeholders import (
    MIDDLE_NAME_PLACEHOLDERS,
    NAME_PLACEHOLDER_PATTERNS,
    NAME_PLACEHOLDERS,
    NAME_TITLES,
    whole_value_regex,
)
from linkage.standardise.text import blank_to_null, clean_source, fold_upper

_NAME_PLACEHOLDER_RE = whole_value_regex(NAME_PLACEHOLDERS, NAME_PLACEHOLDER_PATTERNS)
_MIDDLE_PLACEHOLDER_RE = whole_value_regex(
    NAME_PLACEHOLDERS + MIDDLE_NAME_PLACEHOLDERS, NAME_PLACEHOLDER_PATTERNS
)
_TITLES_RE = r"^(?:(?:" + "|".join(NAME_TITLES) + r")(?: |$))+"
# every kind of dash (Pd) and the minus sign, with the spaces around it: the parts are joined
_HYPHEN_RE = r"\s*[\p{Pd}\x{2212}]\s*"

#: Fields of the struct returned by :func:`check_names_from_parts` / :func:`check_name_from_full`.
NAME_OUTPUTS = ("given_name", "middle_names", "family_name")
NAME_FLAG_FIELDS = ("given_name_flag", "middle_names_flag", "family_name_flag")


def _std_name_keep_empty(expr: pl.Expr, *, keep: str = "") -> pl.Expr:
    """std_name, but "" (not null) when the source held something that left no letters."""
    return (
        fold_upper(expr)
        .str.replace_all(_HYPHEN_RE, "")
        .str.replace_all(rf"[^\p{{L}}{keep}]+", " ")
        .str.strip_chars(" ")
    )


def std_name(expr: pl.Expr) -> pl.Expr:
    """Standardise a name for comparison: upper-case letters and single spaces only.

    Accents folded, apostrophes deleted, hyphens joined, every other non-letter (digits,
    punctuation, symbols, control characters) turned into a space, spaces collapsed. Empty
    results and nulls are null. Idempotent.

    Example:
        >>> s = pl.Series(["  Zoë  O’Brien-Smith ", "J.  smith3", None])
        >>> pl.select(std_name(pl.lit(s))).to_series().to_list()
        ['ZOE OBRIENSMITH', 'J SMITH', None]
    """
    return blank_to_null(_std_name_keep_empty(expr))


def strip_titles(expr: pl.Expr) -> pl.Expr:
    """Remove leading titles (``MR``, ``DR``, ...) from a standardised name; only-titles -> null.

    Example:
        >>> s = pl.Series(["MRS JANE", "DR MR X", "MR", "MRSA"])
        >>> pl.select(strip_titles(pl.lit(s))).to_series().to_list()
        ['JANE', 'X', None, 'MRSA']
    """
    return blank_to_null(_strip_titles_keep_empty(expr))


def _strip_titles_keep_empty(expr: pl.Expr) -> pl.Expr:
    return expr.str.replace(_TITLES_RE, "").str.strip_chars(" ")


def is_name_placeholder(expr: pl.Expr, *, middle: bool = False) -> pl.Expr:
    """Whether a *standardised* name is a placeholder (UNKNOWN, BABY OF ..., XXX, ...).

    Null input gives ``False``. With ``middle=True`` the middle-name-only values (NMN) count too.
    """
    pattern = _MIDDLE_PLACEHOLDER_RE if middle else _NAME_PLACEHOLDER_RE
    return expr.str.contains(pattern).fill_null(False)


def std_given_name(expr: pl.Expr) -> pl.Expr:
    """Standardised given name(s) with titles stripped and placeholders nulled (all tokens kept).

    Example:
        >>> s = pl.Series(["Mr John", "Baby of Smith", "Mary-Ann  Louise"])
        >>> pl.select(std_given_name(pl.lit(s))).to_series().to_list()
        ['JOHN', None, 'MARYANN LOUISE']
    """
    std = _strip_titles_keep_empty(_std_name_keep_empty(expr))
    return std.str.replace(_NAME_PLACEHOLDER_RE, "").replace("", None)


def std_family_name(expr: pl.Expr) -> pl.Expr:
    """Standardised family name with placeholders nulled."""
    return _std_name_keep_empty(expr).str.replace(_NAME_PLACEHOLDER_RE, "").replace("", None)


def _null_str() -> pl.Expr:
    return pl.lit(None, dtype=pl.String)


def _placeholder(std: str, raw: str, *, middle: bool = False) -> pl.Expr:
    """The source held something (``raw``) but its standardised form (``std``) is empty or junk."""
    s = pl.field(std)
    return pl.field(raw).is_not_null() & (
        (s.fill_null("") == "") | is_name_placeholder(s, middle=middle)
    )


def _flag(condition: str, name: str) -> pl.Expr:
    return pl.when(pl.field(condition)).then(pl.lit(name))


def check_names_from_parts(
    given: pl.Expr | None = None,
    middle: pl.Expr | None = None,
    family: pl.Expr | None = None,
) -> pl.Expr:
    """Name fields from separate given / middle / family source columns, as one struct.

    The struct has the fields ``given_name``, ``middle_names``, ``family_name`` and, for each, a
    ``<field>_flag`` (``<field>_placeholder`` or null); other fields start with ``_``. A given-name
    column holding several names keeps the first as ``given_name`` and puts the rest in front of
    the middle names (``Mary Ann`` + ``Louise`` -> ``MARY``, ``ANN LOUISE``).

    Example:
        >>> df = pl.DataFrame(
        ...     {"g": ["Mr John Paul", "UNKNOWN"], "m": ["Lee", None], "f": ["O'Neil", "Smith"]}
        ... )
        >>> s = check_names_from_parts(pl.col("g"), pl.col("m"), pl.col("f"))
        >>> out = ("given_name", "middle_names", "family_name", "given_name_flag")
        >>> df.select(s.struct.field(*out)).rows()
        [('JOHN', 'PAUL LEE', 'ONEIL', None), (None, None, 'SMITH', 'given_name_placeholder')]
    """
    raw = {
        "_g_raw": clean_source(given) if given is not None else _null_str(),
        "_m_raw": clean_source(middle) if middle is not None else _null_str(),
        "_f_raw": clean_source(family) if family is not None else _null_str(),
    }
    return (
        pl.struct([e.alias(k) for k, e in raw.items()])
        .struct.with_fields(
            _g=_strip_titles_keep_empty(_std_name_keep_empty(pl.field("_g_raw"))),
            _m=_std_name_keep_empty(pl.field("_m_raw")),
            _f=_std_name_keep_empty(pl.field("_f_raw")),
        )
        .struct.with_fields(
            _g_ph=_placeholder("_g", "_g_raw"),
            _m_ph=_placeholder("_m", "_m_raw", middle=True),
            _f_ph=_placeholder("_f", "_f_raw"),
        )
        .struct.with_fields(
            _g_ok=pl.when(~pl.field("_g_ph")).then(pl.field("_g")),
            _m_ok=pl.when(~pl.field("_m_ph")).then(pl.field("_m")),
        )
        .struct.with_fields(
            given_name=pl.field("_g_ok").str.extract(r"^(\S+)"),
            middle_names=blank_to_null(
                pl.concat_str(
                    [pl.field("_g_ok").str.extract(r"^\S+ (.+)$"), pl.field("_m_ok")],
                    separator=" ",
                    ignore_nulls=True,
                )
            ),
            family_name=pl.when(~pl.field("_f_ph")).then(pl.field("_f")),
            given_name_flag=_flag("_g_ph", "given_name_placeholder"),
            middle_names_flag=_flag("_m_ph", "middle_names_placeholder"),
            family_name_flag=_flag("_f_ph", "family_name_placeholder"),
        )
    )


def check_name_from_full(full: pl.Expr) -> pl.Expr:
    """Name fields from one ``GIVEN MIDDLE FAMILY`` (or ``FAMILY, GIVEN MIDDLE``) column.

    Returns a struct with the same fields as :func:`check_names_from_parts`
    (``middle_names_flag`` is always null: a middle token is never judged on its own).

    Example:
        >>> names = ["Mr John Paul Smith", "SMITH, Jane", "Baby of Jones", "Unknown Aled Martin"]
        >>> s = check_name_from_full(pl.col("n"))
        >>> cols = ("given_name", "middle_names", "family_name")
        >>> for row in pl.DataFrame({"n": names}).select(s.struct.field(*cols)).rows():
        ...     print(row)
        ('JOHN', 'PAUL', 'SMITH')
        ('JANE', None, 'SMITH')
        (None, None, None)
        (None, 'ALED', 'MARTIN')
    """
    return (
        pl.struct(_raw=clean_source(full))
        # commas are kept (as a bare ",") to find the FAMILY, GIVEN form
        .struct.with_fields(
            _s=_std_name_keep_empty(pl.field("_raw"), keep=",")
            .str.replace_all(r" ?, ?", ",")
            .str.strip_chars(" ")
        )
        .struct.with_fields(
            _comma=pl.field("_s").str.contains(",", literal=True),
            _before=pl.field("_s").str.extract(r"^([^,]*),").str.strip_chars(" "),
            _after=_strip_titles_keep_empty(
                pl.field("_s")
                .str.extract(r"^[^,]*,(.*)$")
                .str.replace_all(",+", " ")
                .str.strip_chars(" ")
            ),
            _whole=_strip_titles_keep_empty(
                pl.field("_s").str.replace_all(",+", " ").str.strip_chars(" ")
            ),
        )
        .struct.with_fields(
            _whole_ph=_placeholder("_whole", "_raw"),
            _given=blank_to_null(
                pl.when(pl.field("_comma"))
                .then(pl.field("_after"))
                .otherwise(pl.field("_whole").str.extract(r"^(.+) \S+$"))
            ),
            _family=blank_to_null(
                pl.when(pl.field("_comma"))
                .then(pl.field("_before"))
                .otherwise(pl.field("_whole").str.extract(r"(\S+)$"))
            ),
        )
        .struct.with_fields(
            _g_ph=pl.field("_whole_ph") | is_name_placeholder(pl.field("_given")),
            _f_ph=pl.field("_whole_ph") | is_name_placeholder(pl.field("_family")),
        )
        .struct.with_fields(
            _g_ok=pl.when(~pl.field("_g_ph")).then(pl.field("_given")),
        )
        # "UNKNOWN ALED MARTIN": the first name is not known; ALED is still a middle name
        .struct.with_fields(
            _first_ph=is_name_placeholder(pl.field("_g_ok").str.extract(r"^(\S+)")),
        )
        .struct.with_fields(
            given_name=pl.when(~pl.field("_first_ph")).then(
                pl.field("_g_ok").str.extract(r"^(\S+)")
            ),
            middle_names=pl.field("_g_ok").str.extract(r"^\S+ (.+)$"),
            family_name=pl.when(~pl.field("_f_ph")).then(pl.field("_family")),
            given_name_flag=pl.when(pl.field("_g_ph") | pl.field("_first_ph")).then(
                pl.lit("given_name_placeholder")
            ),
            middle_names_flag=_null_str(),
            family_name_flag=_flag("_f_ph", "family_name_placeholder"),
        )
    )
