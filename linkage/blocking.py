"""Check the blocking rules before prediction: no rule may generate more pairs than the budget.

One placeholder that standardisation did not catch (every unknown birth date typed as
1901-01-01, a default address) turns a blocking rule into a near cross join that runs for hours
and fills the disk. Each rule's pair count is computed from group counts of its join keys
(never by listing pairs), and a rule over budget stops the run naming the rule and the key value
that generates most of its pairs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from linkage.db import memory_limit_bytes, quote
from linkage.errors import BlockingBudgetError

# One side of an equality: a column, or a prefix of one (as block_on("substr(x, 1, 2)") writes).
_SIDE = r'(?:SUBSTRING\({0}\."?(\w+)"?,\s*(\d+),\s*(\d+)\)|{0}\."?(\w+)"?)'
_EQUALITY = re.compile(_SIDE.format("l") + r"\s*=\s*" + _SIDE.format("r"), re.IGNORECASE)


@dataclass(frozen=True)
class RuleCount:
    rule: str
    pairs: int


def rule_keys(rule: str) -> list[tuple[str, str]]:
    """The (left, right) key expressions, over the table's own columns, of an equi-join rule."""

    def side(column: str, start: str, length: str, plain: str) -> str:
        return f"substring({quote(column)}, {start}, {length})" if column else quote(plain)

    found = _EQUALITY.findall(rule)
    if not found or re.sub(_EQUALITY, "", rule).replace("AND", "").strip(" ()") != "":
        raise BlockingBudgetError(
            f"blocking rule {rule!r} is not a conjunction of l.x = r.y equalities, so its size "
            "cannot be checked before prediction"
        )
    return [(side(*m[:4]), side(*m[4:])) for m in found]


def rule_pairs(con: duckdb.DuckDBPyConnection, table: str, rule: str) -> tuple[int, str, int]:
    """(pairs, biggest key, its pairs) of an equi-join rule on ``table`` (a dedupe: l < r)."""
    keys = rule_keys(rule)
    if all(a == b for a, b in keys):
        return _same_key_pairs(con, table, [a for a, _ in keys])
    left = ", ".join(f"{a} AS k{i}" for i, (a, _) in enumerate(keys))
    right = ", ".join(f"{b} AS k{i}" for i, (_, b) in enumerate(keys))
    not_null_l = " AND ".join(f"{a} IS NOT NULL" for a, _ in keys)
    not_null_r = " AND ".join(f"{b} IS NOT NULL" for _, b in keys)
    on = " AND ".join(f"g.k{i} = h.k{i}" for i in range(len(keys)))
    itself = " AND ".join(f"{a} = {b}" for a, b in keys)
    key_text = " || ', ' || ".join(f"CAST(g.k{i} AS VARCHAR)" for i in range(len(keys)))
    total, top_key, top = con.sql(f"""
        WITH g AS (SELECT {left}, count(*) AS n FROM {table} WHERE {not_null_l} GROUP BY ALL),
             h AS (SELECT {right}, count(*) AS n FROM {table} WHERE {not_null_r} GROUP BY ALL),
             j AS (SELECT {key_text} AS key, g.n * h.n AS p FROM g JOIN h ON {on})
        SELECT (SELECT coalesce(sum(p), 0) FROM j),
               (SELECT key FROM j ORDER BY p DESC, key LIMIT 1),
               (SELECT coalesce(max(p), 0) FROM j)
    """).fetchall()[0]
    (itself_n,) = con.sql(f"SELECT count(*) FROM {table} WHERE {itself}").fetchall()[0]
    # Ordered pairs of two different records; a symmetric rule meets each pair twice.
    symmetric = {(a, b) for a, b in keys} == {(b, a) for a, b in keys}
    halve = 2 if symmetric else 1
    return (int(total) - int(itself_n)) // halve, str(top_key), int(top) // halve


def _same_key_pairs(
    con: duckdb.DuckDBPyConnection, table: str, keys: list[str]
) -> tuple[int, str, int]:
    """:func:`rule_pairs` of a rule that compares each key with itself (``l.x = r.x``): one
    group count, as a group of n records holds n(n-1)/2 pairs."""
    group = ", ".join(keys)
    not_null = " AND ".join(f"{k} IS NOT NULL" for k in keys)
    key_text = " || ', ' || ".join(f"CAST({k} AS VARCHAR)" for k in keys)
    total, top_key, top = con.sql(f"""
        WITH g AS (SELECT {key_text} AS key, count(*) AS n FROM {table} WHERE {not_null}
                   GROUP BY {group})
        SELECT coalesce(sum(n * (n - 1) // 2), 0), arg_min(key, (-n, key)), coalesce(max(n), 0)
        FROM g
    """).fetchall()[0]
    return int(total), str(top_key), int(top) * (int(top) - 1) // 2


def check_blocking_budget(
    con: duckdb.DuckDBPyConnection, table: str, settings_path: Path, budget: float
) -> list[RuleCount]:
    """Count each prediction blocking rule's pairs on ``table``; raise if one exceeds ``budget``.

    Raises:
        BlockingBudgetError: naming the rule, its pair count and the key value behind most of it.
    """
    counts = []
    for rule in prediction_rules(settings_path):
        pairs, top_key, top_pairs = rule_pairs(con, table, rule)
        if pairs > budget:
            cols = ", ".join(a for a, _ in rule_keys(rule))
            raise BlockingBudgetError(
                f"blocking rule {rule!r} would compare {pairs:,} pairs, over the budget of "
                f"{budget:,.0f} (model.max_pairs_per_rule); {top_pairs:,} of them share "
                f"{cols} = {top_key!r}. If that is a placeholder, add it to the standardiser's "
                "placeholders (or fix it at source); otherwise raise the budget"
            )
        counts.append(RuleCount(rule, pairs))
    return counts


#: What Splink's one-statement blocking and scoring needs with the demo model (12 rules),
#: spilling: about 64 MB whatever the number of records (a row group of wide records and a hash
#: table), plus about 16 bytes per record and rule. Measured: 78k records scored under a 64 MB
#: limit but not 101k, 250k under 128 MB but not 96 MB, 1M under 256 MB but not 128 MB (in
#: session 6); 5,064,916 under 2 GB in 204 s and under 1 GB in 260 s (session 10, two threads;
#: peak RSS 2.4 and 1.4 GB). This estimates 81 MB for 90k, 112 MB for 250k, 256 MB for 1M
#: and 1 GB for 5M.
#: :func:`linkage.link.predict_and_cluster` falls back to blocking one rule at a time should
#: the one statement run out of memory all the same.
_FIXED_BYTES = 64 * 2**20
_BYTES_PER_RECORD_AND_RULE = 16


def prediction_rules(settings_path: Path) -> list[str]:
    """The model's blocking rules for prediction, in order (SQL over ``l`` and ``r``)."""
    settings = json.loads(settings_path.read_text())
    return [r["blocking_rule"] for r in settings["blocking_rules_to_generate_predictions"]]


def needs_low_memory_blocking(con: duckdb.DuckDBPyConnection, table: str, rules: int) -> bool:
    """Whether Splink's one-statement blocking and scoring (a UNION ALL of one hash join per
    rule, then the comparisons) would need more than half the memory limit, so that
    :func:`block_pairs` should build the pairs one rule at a time and score them in parts (which
    is slower: at 5M records under a 4 GB limit, 281 s against 185 s for the whole link step)."""
    (rows,) = con.sql(f"SELECT count(*) FROM {table}").fetchall()[0]
    need = _FIXED_BYTES + rows * rules * _BYTES_PER_RECORD_AND_RULE
    return need > memory_limit_bytes(con) // 2


#: Rough bytes each pair and each record of a part take while Splink scores it. Measured at a
#: 64 MB limit and one thread: a part of 146k pairs comparing 124k records scored, one of 195k
#: pairs and 160k records ran out of memory (about 180 bytes each at the whole limit). Over a
#: quarter of the limit, 120 bytes leaves a margin of about 2.5.
_BYTES_PER_SCORED_ROW = 120


def scoring_parts(con: duckdb.DuckDBPyConnection, table: str, pairs: int) -> int:
    """In how many parts to score ``pairs`` pairs of :func:`block_pairs` on ``table`` (split
    by their left record) so that a part's pairs and the records they compare fit in a quarter
    of the memory limit: Splink holds them in hash tables, which do not spill. A part's records
    are its share of the table and, at worst, one more per pair."""
    (rows,) = con.sql(f"SELECT count(*) FROM {table}").fetchall()[0]
    budget = memory_limit_bytes(con) // 4
    return max(1, -(-(rows + 2 * pairs) * _BYTES_PER_SCORED_ROW // budget))


def block_pairs(
    con: duckdb.DuckDBPyConnection, table: str, key: str, rules: list[str], out: str
) -> int:
    """Write the candidate pairs of ``rules`` on ``table`` (a dedupe) to table ``out`` as Splink
    names them (``match_key``, ``join_key_l``, ``join_key_r``): the pairs Splink's own blocking
    gives, in the same SQL, but one rule per statement, so that only one hash join is held at a
    time and it can spill under the memory limit. Returns the number of pairs."""
    con.execute(
        f"CREATE OR REPLACE TABLE {out} (match_key VARCHAR, join_key_l VARCHAR, join_key_r VARCHAR)"
    )
    k = quote(key)
    for i, rule in enumerate(rules):
        earlier = " OR ".join(f"coalesce(({r}), false)" for r in rules[:i])
        con.execute(
            f"INSERT INTO {out} SELECT '{i}', l.{k}, r.{k} FROM {table} AS l "
            f"JOIN {table} AS r ON ({rule}) WHERE l.{k} < r.{k}"
            + (f" AND NOT ({earlier})" if earlier else "")
        )
    (n,) = con.sql(f"SELECT count(*) FROM {out}").fetchall()[0]
    return int(n)
