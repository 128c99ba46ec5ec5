"""The saved Splink model compiled once into the scoring a search runs per candidate.

The search service scores a query against tens of candidates per request, so it does not run
Splink's pipeline (which creates and drops tables per call). It compiles the model's JSON
(``<model.dir>/<version>/splink_model.json``) into the arithmetic of Splink's ``predict``:

* each comparison's agreement level ``gamma_<name>``, in SQL: the levels' ``sql_condition`` in
  order in one ``CASE`` (``-1`` for the null level, then ``n-1`` down to ``0``), with
  ``<col>_l`` the query and ``<col>_r`` the candidate, run by DuckDB as in the nightly run;
* then, in Python (:meth:`ScoringModel.weigh`, the same double-precision operations in the same
  order as Splink's SQL, and cheaper than having DuckDB plan them per request): the level's
  ``log2(m/u)``, taken from Splink's own level objects so that untrained levels get Splink's
  default m and u and the same clamping; the term-frequency adjustment of levels with a
  ``tf_adjustment_column``, ``weight * (log2(u of the exact-match level) -
  log2(max(tf_l, tf_r, tf_minimum_u_value)))``, where ``tf`` is the share of the non-null
  values of the release's records that equal the value (Splink's ``compute_tf_table``); and
  ``match_weight = log2(prior / (1 - prior)) + the sum of those``, whose match probability is
  ``2^w / (1 + 2^w)``.

``tests/test_search.py`` checks the results against Splink's ``predict`` and ``score_pairs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import sqlglot
from splink import SettingsCreator
from sqlglot import exp


@dataclass(frozen=True)
class Level:
    """One agreement level of a comparison, with the numbers Splink scores it with."""

    gamma: int
    label: str
    sql_condition: str
    match_weight: float
    tf_column: str | None = None
    tf_weight: float = 0.0
    tf_log2_u: float = 0.0
    tf_minimum_u: float = 0.0


@dataclass(frozen=True)
class Comparison:
    """A comparison: its levels, best first as Splink numbers them.

    ``null_if_missing``: base columns whose query-side value all being NULL makes the first
    level, the null level, certain (so the comparison need not be computed), or None when the
    null level's condition does not prove it.
    """

    name: str
    levels: tuple[Level, ...]
    null_if_missing: frozenset[str] | None = None
    inputs: tuple[str, ...] = ()
    """Base columns the level conditions read (each as ``<column>_l`` and ``<column>_r``)."""

    @cached_property
    def has_tf(self) -> bool:
        return any(lv.tf_column for lv in self.levels)

    @property
    def case_sql(self) -> str:
        """``CASE WHEN <level condition> THEN <gamma> ... ELSE 0 END``: the model's own SQL."""
        whens = " ".join(
            f"ELSE {lv.gamma}"
            if lv.sql_condition.strip().upper() == "ELSE"
            else f"WHEN {lv.sql_condition} THEN {lv.gamma}"
            for lv in self.levels
        )
        return f"CASE {whens} END"

    @property
    def macro_sql(self) -> str:
        """A DuckDB macro ``gamma_<name>(<column>_l, <column>_r, ...)`` computing the level, so
        that a query calling it stays short to parse."""
        params = ", ".join(f"{c}_{side}" for c in self.inputs for side in ("l", "r"))
        return f'CREATE MACRO "gamma_{self.name}"({params}) AS {self.case_sql}'

    def is_null_for(self, values: dict[str, Any]) -> bool:
        """Whether the null level is certain for a query with these values."""
        cols = self.null_if_missing
        return cols is not None and all(values.get(c) is None for c in cols)

    def level(self, gamma: int) -> Level:
        return next(lv for lv in self.levels if lv.gamma == gamma)

    def label(self, gamma: int) -> str:
        return self.level(gamma).label


@dataclass(frozen=True)
class ScoringModel:
    """A compiled model: its comparisons and prior.

    :meth:`active` and :attr:`Comparison.gamma_sql` give the SQL of the agreement levels;
    :meth:`weigh` turns a pair's levels and term frequencies into its match weight.
    """

    prior_weight: float
    comparisons: tuple[Comparison, ...]
    tf_columns: tuple[str, ...]

    def active(self, values: dict[str, Any]) -> tuple[Comparison, ...]:
        """The comparisons to compute for a query (the others are certainly at the null level)."""
        return tuple(c for c in self.comparisons if not c.is_null_for(values))

    def weigh(
        self, gammas: dict[str, int], tf: dict[str, tuple[float | None, float | None]]
    ) -> tuple[float, dict[str, float]]:
        """The match weight of a pair and each comparison's part of it.

        ``gammas`` may leave out comparisons that :meth:`active` left out (their null level).
        ``tf`` maps each of :attr:`tf_columns` to the pair's ``(tf_l, tf_r)``. The arithmetic and
        its order are Splink's: prior, then per comparison its level's weight and its
        term-frequency adjustment, added left to right in double precision.
        """
        total = self.prior_weight
        parts: dict[str, float] = {}
        for c in self.comparisons:
            level = c.level(gammas[c.name]) if c.name in gammas else c.levels[0]
            total += level.match_weight
            part = level.match_weight
            if c.has_tf:
                adj = _tf_adjustment(level, tf)
                total += adj
                part += adj
            parts[c.name] = part
        return total, parts


def _tf_adjustment(level: Level, tf: dict[str, tuple[float | None, float | None]]) -> float:
    if level.tf_column is None:
        return 0.0
    tf_l, tf_r = tf[level.tf_column]
    if tf_l is None and tf_r is None:
        return 0.0
    a = tf_l if tf_l is not None else tf_r
    b = tf_r if tf_r is not None else tf_l
    assert a is not None and b is not None
    return level.tf_weight * (level.tf_log2_u - math.log2(max(a, b, level.tf_minimum_u)))


def _f(x: float) -> str:
    """A float as an exact SQL DOUBLE literal (as Splink writes it)."""
    return f"cast({x!r} as float8)"


def _level(level: Any, levels: list[Any]) -> Level:
    tf_col = level._tf_adjustment_input_column_name if level._has_tf_adjustments else None
    tf = (
        tf_col is not None
        and level.comparison_vector_value != -1
        and level._tf_adjustment_weight != 0
        and not level._is_else_level
    )
    return Level(
        gamma=level.comparison_vector_value,
        label=level.label_for_charts,
        sql_condition=level.sql_condition,
        match_weight=float(level._match_weight),
        tf_column=tf_col if tf else None,
        tf_weight=float(level._tf_adjustment_weight) if tf else 0.0,
        tf_log2_u=(
            math.log2(level._u_probability_corresponding_to_exact_match(levels)) if tf else 0.0
        ),
        tf_minimum_u=float(level._tf_minimum_u_value) if tf else 0.0,
    )


def _inputs(levels: list[Any]) -> tuple[str, ...]:
    """The base columns that the levels' conditions read as ``<column>_l`` / ``<column>_r``."""
    cols: set[str] = set()
    for lv in levels:
        if lv.sql_condition.strip().upper() == "ELSE":
            continue
        for col in sqlglot.parse_one(lv.sql_condition, read="duckdb").find_all(exp.Column):
            name = col.name
            if name.lower().endswith(("_l", "_r")):
                cols.add(name[:-2])
            else:
                raise ValueError(f"level condition reads {name!r}, not a _l/_r column")
    return tuple(sorted(cols))


def _null_if_missing(levels: list[Any]) -> frozenset[str] | None:
    """The ``null_if_missing`` of a comparison (see :class:`Comparison`), read with sqlglot."""
    first = levels[0]
    if not first.is_null_level:
        return None
    cols: set[str] = set()

    def true_if_left_null(node: exp.Expr) -> bool:
        if isinstance(node, exp.Paren):
            return true_if_left_null(node.this)
        if isinstance(node, exp.And):
            return true_if_left_null(node.left) and true_if_left_null(node.right)
        if isinstance(node, exp.Or):
            return true_if_left_null(node.left) or true_if_left_null(node.right)
        if (
            isinstance(node, exp.Is)
            and isinstance(node.this, exp.Column)
            and isinstance(node.expression, exp.Null)
            and node.this.name.lower().endswith("_l")
        ):
            cols.add(node.this.name[:-2])
            return True
        return False

    tree = sqlglot.parse_one(first.sql_condition, read="duckdb")
    return frozenset(cols) if true_if_left_null(tree) and cols else None


def compile_model(settings_path: Path) -> ScoringModel:
    """Compile a saved Splink model (DuckDB dialect) into a :class:`ScoringModel`.

    Example:
        >>> import json, tempfile
        >>> from linkage.model import build_settings
        >>> d = build_settings(("date_of_birth", "sex"), ()).get_settings("duckdb").as_dict()
        >>> p = Path(tempfile.mkdtemp()) / "m.json"
        >>> _ = p.write_text(json.dumps(d))
        >>> [c.name for c in compile_model(p).comparisons]
        ['date_of_birth', 'sex']
    """
    settings = SettingsCreator.from_path_or_dict(settings_path).get_settings("duckdb")
    prior = settings._probability_two_random_records_match
    comparisons = tuple(
        Comparison(
            cc.output_column_name,
            tuple(_level(lv, cc.comparison_levels) for lv in cc.comparison_levels),
            _null_if_missing(cc.comparison_levels),
            _inputs(cc.comparison_levels),
        )
        for cc in settings.comparisons
    )
    tf_columns = tuple(
        dict.fromkeys(lv.tf_column for c in comparisons for lv in c.levels if lv.tf_column)
    )
    prior_weight = math.log2(prior / (1 - prior))
    return ScoringModel(prior_weight, comparisons, tf_columns)


def match_probability(match_weight: float) -> float:
    """The match probability of a match weight, computed as Splink does (stable both ways)."""
    if match_weight >= 0:
        return 1.0 / (1.0 + 2.0 ** (-match_weight))
    return 2.0**match_weight / (1.0 + 2.0**match_weight)
