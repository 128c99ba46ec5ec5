"""Given-name variants: each given name with the formal names it is a short form of.

``BILL`` -> ``[BILL, WILL, WILLIAM, ...]``: two records' given names are variants of one another
when their lists share a name. The reference list is the public, hand-curated ``nicknames``
package (Apache-2.0, about 1,400 short forms of English given names), bundled with it, so nothing
is downloaded at run time, and ``nicknames_uk.txt`` beside this module: about 100 short forms and
spellings common in the UK that the package lacks (``MO`` and ``MUHAMMAD``, ``ANNIE`` and
``HANNAH``). Neither was derived from the demo generator's own list.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa
from nicknames import NickNamer

_NOT_LETTER = re.compile(r"[^A-Z]")

#: The column that ``add_given_name_variants`` adds.
VARIANTS_COLUMN = "given_name_variants"


def _std(name: str) -> str:
    return _NOT_LETTER.sub("", name.upper())


@cache
def nickname_pairs() -> tuple[tuple[str, str], ...]:
    """(short form, formal name) pairs, standardised like ``given_name``, sorted."""
    lookup = NickNamer().canonical_lookup
    pairs = {(_std(nick), _std(formal)) for nick, formals in lookup.items() for formal in formals}
    for line in (Path(__file__).parent / "nicknames_uk.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            formal, nick = line.split(",")
            pairs.add((_std(nick), _std(formal)))
    return tuple(sorted(pairs))


def variants_sql(column: str, table: str = "__nicknames") -> str:
    """SQL for the variants list of ``column`` (NULL when the name is NULL); ``table`` must be
    joined as ``n`` on ``n.nickname = column``."""
    return (
        f"CASE WHEN {column} IS NULL THEN NULL "
        f"ELSE list_sort(list_distinct(list_concat([{column}], coalesce(n.formals, [])))) END"
    )


def register_nicknames(con: duckdb.DuckDBPyConnection) -> str:
    """Create temp table ``__nicknames(nickname, formals)`` on ``con``; return its name."""
    short, formal = zip(*nickname_pairs(), strict=True)
    con.register("__nickname_pairs", pa.table({"nickname": short, "formal": formal}))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __nicknames AS SELECT nickname, "
        "list(formal ORDER BY formal) AS formals FROM __nickname_pairs GROUP BY nickname"
    )
    con.unregister("__nickname_pairs")
    return "__nicknames"


def given_name_variants(con: duckdb.DuckDBPyConnection, names: list[str | None]) -> list[object]:
    """The variants of each name (for tests and the search service).

    Example:
        >>> con = duckdb.connect()
        >>> given_name_variants(con, ["BILL", None])
        [['BILL', 'ROBERT', 'WILL', 'WILLIAM', 'WILLIS'], None]
    """
    register_nicknames(con)
    con.register("__names", pa.table({"i": range(len(names)), "given_name": names}))
    rows = con.sql(
        f"SELECT {variants_sql('given_name')} FROM __names "
        "LEFT JOIN __nicknames n ON n.nickname = given_name ORDER BY i"
    ).fetchall()
    con.unregister("__names")
    return [r[0] for r in rows]
