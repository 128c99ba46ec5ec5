"""The Splink model: comparisons and blocking built in code, trained once, saved with a version.

The model definition lives here (not in a hand-edited JSON) because a saved Splink model embeds
backend SQL. Training is explicit (``train_model``); the nightly run only loads an artefact.
Comparisons are built from the canonical fields the training data actually holds, so a project
whose agencies lack, say, sex, gets no sex comparison instead of one that can never be estimated.
"""

from __future__ import annotations

import copy
import json
import logging
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import splink
import splink.comparison_level_library as cll
import splink.comparison_library as cl
import sqlglot
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from linkage.blocking import block_pairs, rule_pairs
from linkage.config import ProjectConfig
from linkage.db import memory_limit_bytes, quote, sql_str
from linkage.errors import ModelError
from schemas.canonical import identifier_column

log = logging.getLogger(__name__)

# Canonical fields the model can compare, in the order they appear in the model.
MODEL_FIELDS = ("name", "middle_names", "date_of_birth", "sex", "location")
# A field is used only if at least this share of training records hold it.
MIN_FILL = 0.01
#: The column the full-name blocking rule compares (built by :func:`linkage.link.load_records`):
#: given and family name, or NULL for a full name of the model's common names.
NAME_KEY = "full_name_key"


@dataclass(frozen=True)
class ModelArtefact:
    """A saved model: its folder, version and what it compares."""

    path: Path
    version: str
    fields: tuple[str, ...]
    identifier_schemes: tuple[str, ...]

    @property
    def settings_path(self) -> Path:
        return self.path / "splink_model.json"

    @property
    def common_names(self) -> Path | None:
        """The full names too common to be a candidate pair on their own (None for older
        models, whose name rule compares every full name)."""
        path = self.path / "common_names.parquet"
        return path if path.exists() else None

    def tf_tables(self) -> dict[str, Path]:
        """Term-frequency tables saved at training, by column (empty for older models)."""
        return {p.stem.removeprefix("tf_"): p for p in sorted(self.path.glob("tf_*.parquet"))}


def tf_columns(settings: dict[str, Any]) -> list[str]:
    """Columns the model adjusts for term frequency."""
    cols = {
        lv["tf_adjustment_column"]
        for c in settings["comparisons"]
        for lv in c["comparison_levels"]
        if lv.get("tf_adjustment_column")
    }
    return sorted(cols)


def save_tf_tables(
    con: duckdb.DuckDBPyConnection, table: str, columns: list[str], out: Path
) -> None:
    """Term frequencies of ``columns`` in ``table``, one Parquet file each, as Splink reads them.

    They are part of the model: every run (full or incremental) and the search service score with
    the same frequencies, so a pair's score never depends on which other records were loaded.
    A value unseen in training gets no term-frequency adjustment.
    """
    for col in columns:
        c = quote(col)
        con.execute(f"""
            COPY (SELECT {c}, count(*) / sum(count(*)) OVER () AS {quote("tf_" + col)}
                  FROM {table} WHERE {c} IS NOT NULL GROUP BY {c} ORDER BY {c})
            TO {sql_str(out / f"tf_{col}.parquet")} (FORMAT parquet)
        """)


def save_common_names(
    con: duckdb.DuckDBPyConnection, table: str, out: Path, max_records: int
) -> int:
    """The full names (given and family) held by more than ``max_records`` training records, to
    ``out/common_names.parquet``; returns how many.

    Two records sharing only such a name are not a candidate pair of the full-name rule (pairs
    in a name's block grow with the square of its count: 9.4M of the 14M candidates at 1M demo
    records, most of them strangers). A pair of one person with a common name still meets on
    another rule when it shares a birth date, a postcode, an address or an identifier; one that
    shares none of them scores far below the threshold anyway, a common name being weak evidence.
    Fixed at training, like the term frequencies, so a full and an incremental run compare the
    same pairs.
    """
    path = out / "common_names.parquet"
    con.execute(f"""
        COPY (SELECT given_name, family_name FROM {table}
              WHERE given_name IS NOT NULL AND family_name IS NOT NULL
              GROUP BY ALL HAVING count(*) > {int(max_records)} ORDER BY ALL)
        TO {sql_str(path)} (FORMAT parquet)
    """)
    return int(con.sql(f"SELECT count(*) FROM read_parquet({sql_str(path)})").fetchall()[0][0])


def register_tf_tables(
    con: duckdb.DuckDBPyConnection, db_api: DuckDBAPI, linker: Linker, model: ModelArtefact
) -> None:
    """Make ``linker`` (on ``con``) use the model's saved term frequencies (if it has them)."""
    for col, path in model.tf_tables().items():
        table = f"__tf_{col}"
        con.execute(
            f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_parquet({sql_str(path)})"
        )
        linker.table_management.register_term_frequency_lookup(
            db_api.register(table, dataset_display_name=table), col
        )


def _names() -> cl.CustomComparison:
    """Given and family name together, so that 'same family name, different given name' (a
    household member) is its own, weak level rather than half of a strong one. Short forms
    (``BILL`` / ``WILLIAM``, from :mod:`linkage.standardise.nicknames`) and a middle name used as
    the given name have their own levels, which keeps them out of 'given name differs'."""
    given, family = "given_name", "family_name"
    variants = "list_has_any(given_name_variants_l, given_name_variants_r)"
    middle = (
        "(list_contains(string_split(middle_names_r, ' '), given_name_l) "
        "OR list_contains(string_split(middle_names_l, ' '), given_name_r))"
    )

    def either_null(col: str) -> Any:
        return cll.NullLevel(col)  # true when the value is missing on either side

    def family_close() -> Any:
        return cll.JaroWinklerLevel(family, 0.92)

    def reversed_jw(threshold: float) -> Any:
        return cll.CustomLevel(
            f"jaro_winkler_similarity(given_name_l, family_name_r) >= {threshold} "
            f"AND jaro_winkler_similarity(family_name_l, given_name_r) >= {threshold}",
            f"given and family names reversed, Jaro-Winkler >= {threshold}",
        )

    return cl.CustomComparison(
        output_column_name="name",
        comparison_levels=[
            cll.And(either_null(given), either_null(family)).configure(is_null_level=True),
            cll.And(cll.ExactMatchLevel(given), cll.ExactMatchLevel(family)).configure(
                tf_adjustment_column=family
            ),
            cll.ColumnsReversedLevel(given, family, symmetrical=True),
            cll.And(cll.JaroWinklerLevel(given, 0.92), family_close()),
            reversed_jw(0.92),
            cll.And(cll.CustomLevel(variants), family_close()).configure(
                label_for_charts="given names are variants (short form), family name matches"
            ),
            cll.And(cll.CustomLevel(middle), family_close()).configure(
                label_for_charts="given name is the other's middle name, family name matches"
            ),
            cll.And(cll.JaroWinklerLevel(given, 0.8), cll.JaroWinklerLevel(family, 0.8)),
            cll.And(either_null(given), family_close()).configure(
                label_for_charts="family name matches, given name missing"
            ),
            cll.And(either_null(family), cll.JaroWinklerLevel(given, 0.92)).configure(
                label_for_charts="given name matches, family name missing"
            ),
            # Most changes of family name (marriage) are women's: its own level lets EM weigh
            # "same given name, other family name" by how often each sex's records do that.
            cll.And(
                cll.ExactMatchLevel(given), cll.CustomLevel("sex_l = 'F' AND sex_r = 'F'")
            ).configure(
                tf_adjustment_column=given,
                label_for_charts="given name matches, family name differs, both female",
            ),
            cll.ExactMatchLevel(given).configure(
                tf_adjustment_column=given,
                label_for_charts="given name matches, family name differs (name change?)",
            ),
            cll.Or(cll.JaroWinklerLevel(given, 0.92), cll.CustomLevel(variants)).configure(
                label_for_charts="given name close or a short form, family name differs"
            ),
            cll.ExactMatchLevel(family).configure(
                tf_adjustment_column=family,
                label_for_charts="family name matches, given name differs",
            ),
            cll.ElseLevel(),
        ],
    )


def _middle_names() -> cl.CustomComparison:
    """Middle names, when both records hold some. A middle name that is the other record's given
    name (a person known by it) has its own level, so that it is not counted as disagreement on
    top of the name comparison's level for it."""
    mid_l, mid_r = "string_split(middle_names_l, ' ')", "string_split(middle_names_r, ' ')"
    return cl.CustomComparison(
        output_column_name="middle_names",
        comparison_levels=[
            cll.NullLevel("middle_names"),
            cll.ExactMatchLevel("middle_names"),
            cll.CustomLevel(f"list_has_any({mid_l}, {mid_r})", "a middle name in common"),
            cll.CustomLevel(
                f"list_contains({mid_l}, given_name_r) OR list_contains({mid_r}, given_name_l)",
                "one's middle name is the other's given name",
            ),
            cll.CustomLevel("left(middle_names_l, 1) = left(middle_names_r, 1)", "same initial"),
            cll.ElseLevel(),
        ],
    )


def _date_of_birth() -> cl.CustomComparison:
    dob = "date_of_birth"
    return cl.CustomComparison(
        output_column_name=dob,
        comparison_levels=[
            cll.NullLevel(dob),
            cll.ExactMatchLevel(dob),
            cll.CustomLevel(
                "levenshtein(strftime(date_of_birth_l, '%Y%m%d'), "
                "strftime(date_of_birth_r, '%Y%m%d')) <= 1",
                "one digit different",
            ),
            cll.CustomLevel(
                "year(date_of_birth_l) = year(date_of_birth_r) "
                "AND month(date_of_birth_l) = day(date_of_birth_r) "
                "AND day(date_of_birth_l) = month(date_of_birth_r)",
                "day and month transposed",
            ),
            cll.AbsoluteDateDifferenceLevel(dob, input_is_string=False, threshold=1, metric="year"),
            cll.ElseLevel(),
        ],
    )


def _location() -> cl.CustomComparison:
    """Postcode and address as one comparison: they are correlated evidence of one thing."""
    return cl.CustomComparison(
        output_column_name="location",
        comparison_levels=[
            # Nothing to compare: neither postcode nor address is held on both sides. (A
            # missing location is not evidence against a match, unlike a different one.)
            cll.And(cll.NullLevel("postcode"), cll.NullLevel("address")).configure(
                is_null_level=True
            ),
            cll.And(cll.ExactMatchLevel("postcode"), cll.JaroWinklerLevel("address", 0.9)),
            # Ranked by how strongly each points at one dwelling: the same address with a
            # mistyped postcode beats a shared postcode with another address (a neighbour).
            cll.JaroWinklerLevel("address", 0.9),
            # Typing errors in both: a close address and a postcode one edit or one swap of
            # adjacent characters away. Damerau-Levenshtein runs only on pairs that reach this
            # level and whose address is already close.
            cll.And(
                cll.JaroWinklerLevel("address", 0.8), cll.DamerauLevenshteinLevel("postcode", 1)
            ),
            cll.ExactMatchLevel("postcode"),
            cll.ExactMatchLevel("postcode_district"),
            cll.ElseLevel(),
        ],
    )


def _identifier(scheme: str) -> cl.CustomComparison:
    col = identifier_column(scheme)
    return cl.CustomComparison(
        output_column_name=col,
        comparison_levels=[
            cll.NullLevel(col),
            cll.ExactMatchLevel(col),
            cll.DamerauLevenshteinLevel(col, 1),
            cll.ElseLevel(),
        ],
    )


def build_settings(fields: tuple[str, ...], schemes: tuple[str, ...]) -> SettingsCreator:
    """Splink settings comparing the given canonical fields and identifier schemes."""
    comparisons: list[Any] = []
    for f in fields:
        if f == "name":
            comparisons.append(_names())
        elif f == "middle_names":
            comparisons.append(_middle_names())
        elif f == "date_of_birth":
            comparisons.append(_date_of_birth())
        elif f == "sex":
            comparisons.append(cl.ExactMatch("sex"))
        elif f == "location":
            comparisons.append(_location())
    comparisons.extend(_identifier(s) for s in schemes)
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="record_key",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=blocking_rules(fields, schemes),
        retain_intermediate_calculation_columns=True,
        retain_matching_columns=True,
        additional_columns_to_retain=["agency"],
    )


def blocking_rules(fields: tuple[str, ...], schemes: tuple[str, ...]) -> list[Any]:
    """Candidate pairs: any shared trusted identifier, or two of name / birth date / postcode."""
    rules: list[Any] = [block_on(identifier_column(s)) for s in schemes]
    has = set(fields)
    if {"name", "date_of_birth"} <= has:
        rules.append(block_on("family_name", "date_of_birth"))
        rules.append(block_on("given_name", "date_of_birth"))
        # A typo in each name: born the same day, with the same initials.
        rules.append(
            block_on("date_of_birth", "substr(given_name, 1, 1)", "substr(family_name, 1, 1)")
        )
    if "name" in has:
        rules.append(block_on(NAME_KEY))  # the full name, unless common (save_common_names)
        # Given and family names recorded the other way round, which no name rule above pairs.
        rules.append("l.given_name = r.family_name AND l.family_name = r.given_name")
    if {"location", "name"} <= has:
        rules.append(block_on("postcode", "given_name"))
        rules.append(block_on("postcode", "family_name"))
    if "location" in has:
        rules.append(block_on("address"))
    if {"location", "date_of_birth"} <= has:
        rules.append(block_on("postcode", "date_of_birth"))
    return rules


def _fill_rates(con: duckdb.DuckDBPyConnection, table: str, schemes: list[str]) -> dict[str, float]:
    cols = {
        "name": "coalesce(given_name, family_name)",
        "middle_names": "middle_names",
        "date_of_birth": "date_of_birth",
        "sex": "sex",
        "location": "coalesce(postcode, address)",
        **{s: identifier_column(s) for s in schemes},
    }
    select = ", ".join(f"avg(({expr}) IS NOT NULL::INT)" for expr in cols.values())
    row = con.sql(f"SELECT {select} FROM {table}").fetchall()[0]
    return {k: float(v or 0.0) for k, v in zip(cols, row, strict=True)}


def match_prior(
    con: duckdb.DuckDBPyConnection, table: str, rules: list[list[str]], recall: float
) -> float:
    """The probability that two random records match, estimated as Splink's
    ``estimate_probability_two_random_records_match`` does (pairs agreeing exactly on all columns
    of any rule, divided by the rules' recall, over all pairs), but counted one rule at a time
    (:func:`linkage.blocking.block_pairs`) so that it spills under a low memory limit."""
    sql = [" AND ".join(f"l.{quote(c)} = r.{quote(c)}" for c in columns) for columns in rules]
    matches = block_pairs(con, table, "record_key", sql, "__prior_pairs")
    con.execute("DROP TABLE __prior_pairs")
    (n,) = con.sql(f"SELECT count(*) FROM {table}").fetchall()[0]
    total = n * (n - 1) // 2
    if not matches or matches > total * recall:
        raise ModelError(
            f"the deterministic rules {rules} find {matches:,} matching pairs among {total:,}: "
            "no estimate of how often two records match can be made from that; check the "
            "identifiers and names the agencies deliver"
        )
    return matches / recall / total


def train_model(
    con: duckdb.DuckDBPyConnection, table: str, config: ProjectConfig, version: str | None = None
) -> ModelArtefact:
    """Train a model on the standardised records in ``table`` and save it as a new version.

    The match prior comes from deterministic rules, m from expectation maximisation with the
    sessions' pairs pooled (``_m_from_em_pairs``) and u from random pairs
    (``_u_from_random_pairs``).
    """
    started = time.monotonic()
    schemes = [s for s, spec in sorted(config.identifiers.items()) if spec.compare]
    fill = _fill_rates(con, table, schemes)
    fields = tuple(f for f in MODEL_FIELDS if fill[f] >= MIN_FILL)
    used_schemes = tuple(s for s in schemes if fill[s] >= MIN_FILL)
    if len(fields) + len(used_schemes) < 2:
        raise ModelError(
            f"the training data hold too few fields to link on (fill rates: {fill}); "
            "map at least names and a date of birth or an identifier"
        )
    settings = build_settings(fields, used_schemes)
    deterministic = [[identifier_column(s)] for s in used_schemes]
    if {"name", "date_of_birth"} <= set(fields):
        deterministic.append(["given_name", "family_name", "date_of_birth"])
    settings.probability_two_random_records_match = match_prior(
        con, table, deterministic, recall=0.8
    )
    db_api = DuckDBAPI(connection=con)
    linker = Linker(db_api.register(table, dataset_display_name="records"), settings)
    # A first u from a small sample is all EM needs to find m (its blocks hold mostly matches, so
    # m hardly depends on u: a second EM pass after the u below changed nothing). The model's u
    # is then estimated on the full sample with its true matches discounted.
    linker.training.estimate_u_using_random_sampling(
        max_pairs=config.model.max_pairs_u / 10, seed=config.model.seed
    )
    blocks: list[Any] = []  # Splink's rules, or SQL for a session trained on a sample
    sampled = {}
    for block in _em_blocks(fields, used_schemes):
        sql = _rule_sql(block)
        pairs = rule_pairs(con, table, sql)[0]
        if pairs > config.model.max_pairs_em:  # every k-th pair, by a hash of the two keys
            k = sampled[sql] = -(-pairs // int(config.model.max_pairs_em))
            block = f"({sql}) AND hash(l.record_key, r.record_key) % {k} = 0"
            log.info("EM session %s: %d pairs, trained on one in %d", sql, pairs, k)
        blocks.append(block)
    for rule in blocks:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    pooled = _m_from_em_pairs(
        con, table, linker.misc.save_model_to_json(), [_rule_sql(b) for b in blocks]
    )
    trained = _u_from_random_pairs(con, table, pooled, config.model.max_pairs_u, config.model.seed)

    version = version or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = config.model.dir / version
    out.mkdir(parents=True, exist_ok=False)
    artefact = ModelArtefact(out, version, fields, used_schemes)
    artefact.settings_path.write_text(json.dumps(trained, indent=4))
    save_tf_tables(con, table, tf_columns(trained), out)
    common = save_common_names(con, table, out, config.model.common_name_records)
    n_records = con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    metadata = {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fields": list(fields),
        "identifier_schemes": list(used_schemes),
        "training_data": {
            "records": n_records,
            "fill_rates": {k: round(v, 4) for k, v in fill.items()},
            "max_pairs_u": config.model.max_pairs_u,
            "em_sessions_sampled": sampled,
            "common_names": {"records_over": config.model.common_name_records, "names": common},
            "seed": config.model.seed,
        },
        "training_seconds": round(time.monotonic() - started, 1),
        "versions": {
            "splink": splink.__version__,
            "duckdb": duckdb.__version__,
            "python": platform.python_version(),
        },
    }
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    log.info(
        "trained model %s on %d records in %.1fs", version, n_records, time.monotonic() - started
    )
    return artefact


def _rule_sql(rule: Any) -> str:
    return (
        rule if isinstance(rule, str) else str(rule.get_blocking_rule("duckdb").blocking_rule_sql)
    )


def _columns_read(sql: str) -> set[str]:
    """The base columns a level condition (``x_l``, ``x_r``) or blocking rule (``l.x``) reads."""
    cols = set()
    for col in sqlglot.parse_one(sql, read="duckdb").find_all(sqlglot.exp.Column):
        if col.table in ("l", "r"):
            cols.add(col.name)
        elif col.name.lower().endswith(("_l", "_r")):
            cols.add(col.name[:-2])
    return cols


def levels_by_gamma(comparison: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """A saved comparison's non-null levels with their ``gamma_`` value: Splink numbers them
    from the top, n - 1 down to 0 for the else level."""
    levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
    return list(zip(range(len(levels) - 1, -1, -1), levels, strict=True))


def _scoring_settings(settings: dict[str, Any], rules: list[str]) -> dict[str, Any]:
    """``settings`` to score the pairs of ``rules`` with, keeping only the ``gamma_`` columns."""
    scoring = copy.deepcopy(settings)
    scoring["blocking_rules_to_generate_predictions"] = rules
    # gamma_ columns still come out: they ride with retain_matching_columns, left on.
    scoring["retain_intermediate_calculation_columns"] = False
    scoring["additional_columns_to_retain"] = []
    return scoring


def level_weights(
    con: duckdb.DuckDBPyConnection, pairs: str, name: str, weight: str, where: str = "true"
) -> dict[int, float]:
    """Sum of ``weight`` (SQL over a pair) per level of comparison ``name`` over ``pairs``."""
    return dict(
        con.sql(
            f"SELECT gamma_{name}, sum({weight}) FROM {pairs} "
            f"WHERE gamma_{name} >= 0 AND ({where}) GROUP BY 1"
        ).fetchall()
    )


def _m_from_em_pairs(
    con: duckdb.DuckDBPyConnection, table: str, settings: dict[str, Any], rules: list[str]
) -> dict[str, Any]:
    """``settings`` with each comparison's m re-estimated over all the pairs of the EM sessions
    that estimated it (those not blocked on its columns), each pair counted as a match as far as
    the trained model says it is one.

    Splink keeps the median of the sessions' estimates, and each session sees one population: in
    the demo, the pairs sharing a PNC id or an NI number are police and probation records, mostly
    of men, so their median gave the level "given name matches, family name differs, both
    female" an m of half what the true pairs show. Pooling the sessions' pairs weighs each
    population by how many matches it holds. The pairs of all sessions are scored once; each
    comparison counts those that one of its own sessions blocks.
    """
    settings = copy.deepcopy(settings)
    linker = Linker(DuckDBAPI(connection=con).register(table), _scoring_settings(settings, rules))
    pairs = linker.inference.predict().physical_name
    for comparison in settings["comparisons"]:
        reads = set().union(
            *(
                _columns_read(lv["sql_condition"])
                for lv in comparison["comparison_levels"]
                if lv["sql_condition"].strip().upper() != "ELSE"
            )
        )
        own = [_on_pair_columns(r) for r in rules if not _columns_read(r) & reads]
        if not own:
            continue  # every session was blocked on it: keep Splink's estimate
        counts = level_weights(
            con,
            pairs,
            comparison["output_column_name"],
            "match_probability",
            f"coalesce({' OR '.join(own)}, false)",
        )
        total = sum(counts.values())
        for gamma_value, level in levels_by_gamma(comparison):
            if "m_probability" in level and counts.get(gamma_value) and total:
                level["m_probability"] = counts[gamma_value] / total
    linker.table_management.delete_tables_created_by_splink_from_db()
    return settings


def _on_pair_columns(rule: str) -> str:
    """A blocking rule (``l.x = r.x``) rewritten over a prediction's columns (``x_l = x_r``)."""

    def rename(node: sqlglot.exp.Expr) -> sqlglot.exp.Expr:
        if isinstance(node, sqlglot.exp.Column) and node.table in ("l", "r"):
            return sqlglot.exp.column(f"{node.name}_{node.table}", quoted=True)
        return node

    return f"({sqlglot.parse_one(rule, read='duckdb').transform(rename).sql('duckdb')})"


#: Rough bytes one record takes in the scoring of random pairs (both sides of the join, with
#: its comparison columns); only used to split that scoring under a low memory limit.
_BYTES_PER_SCORED_RECORD = 1000


def _u_from_random_pairs(
    con: duckdb.DuckDBPyConnection,
    table: str,
    settings: dict[str, Any],
    max_pairs: float,
    seed: int,
) -> dict[str, Any]:
    """``settings`` with u re-estimated on random pairs, each counted as a non-match only as
    far as the trained model says it is one (the EM update of u, over unblocked pairs).

    Random sampling counts every sampled pair as a non-match. When a dataset holds many
    duplicates (1 pair in 10,000 matches in FEBRL4, 1 in 17,000 in the demo), those true matches
    dominate the strongest levels: the u of a shared identifier, of same name and birth date, of
    same address, is then about prior x m, which caps each of those levels near -log2(prior)
    (13 to 14 bits here) however rare such agreement is between different people.
    """
    n = con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    # Records hashed into buckets: pairs within a bucket are a uniform sample of all pairs,
    # about max_pairs of them. Under a low memory limit the buckets are scored in several
    # parts, each holding a share of the records (a pair never spans two parts).
    buckets = max(1, round(n * n / (2 * max_pairs)))
    parts = min(buckets, max(1, -(-n * _BYTES_PER_SCORED_RECORD // (memory_limit_bytes(con) // 4))))
    scoring = _scoring_settings(settings, ["l._pair_bucket = r._pair_bucket"])
    weights: dict[str, dict[int, float]] = {
        c["output_column_name"]: {} for c in settings["comparisons"]
    }
    for part in range(parts):
        con.execute(
            "CREATE OR REPLACE TEMP VIEW __u_pairs AS SELECT * FROM (SELECT *, "
            f"hash(record_key, {int(seed)}) % {buckets} AS _pair_bucket FROM {table}) "
            f"WHERE _pair_bucket % {parts} = {part}"
        )
        linker = Linker(
            DuckDBAPI(connection=con).register("__u_pairs", dataset_display_name="u_pairs"),
            scoring,
        )
        pairs = linker.inference.predict().physical_name
        for name, counts in weights.items():
            for gamma_value, w in level_weights(con, pairs, name, "1 - match_probability").items():
                counts[gamma_value] = counts.get(gamma_value, 0.0) + w
        linker.table_management.delete_tables_created_by_splink_from_db()
        con.execute("DROP VIEW __u_pairs")
    if parts > 1:
        log.info("u estimated on random pairs in %d parts (low memory)", parts)
    for comparison in settings["comparisons"]:
        counts = weights[comparison["output_column_name"]]
        total = sum(counts.values())
        if not total:
            continue  # no sampled pair holds this field on both sides: keep the first u
        for gamma_value, level in levels_by_gamma(comparison):
            if "m_probability" not in level:
                continue  # EM never saw a match here: leave the level to Splink's defaults
            # A level no non-matching pair in the sample reached is rarer than one in `total`:
            # use that bound, not zero (which Splink would read as "never observed").
            level["u_probability"] = max(counts.get(gamma_value, 0.0), 1.0) / total
    for comparison in settings["comparisons"]:
        _no_level_below_else(comparison["comparison_levels"])
    return settings


def _no_level_below_else(levels: list[dict[str, Any]]) -> None:
    """Raise any level weighted below the comparison's else level up to it.

    Every level above 'else' is some agreement; counting it as stronger evidence against a match
    than total disagreement is an artefact of a level EM hardly saw (postcode district alone got
    m = 0, -10.7 bits against -3.9 for 'all other', in the demo), not something to act on.
    """
    *agreeing, other = (lv for lv in levels if not lv.get("is_null_level"))
    if "m_probability" not in other or "u_probability" not in other:
        return
    floor = other["m_probability"] / other["u_probability"]  # the else level's Bayes factor
    for level in agreeing:
        m, u = level.get("m_probability"), level.get("u_probability")
        if m is not None and u and m / u < floor:
            level["m_probability"] = u * floor


def _em_blocks(fields: tuple[str, ...], schemes: tuple[str, ...]) -> list[Any]:
    """EM sessions so that every comparison is estimated in at least one of them.

    Pairs sharing an identifier are nearly all true matches and hardly ever two members of one
    household, so sessions blocked on identifiers estimate m for names, birth date and location
    cleanly. A session blocked on birth date alone is used only when those cannot cover every
    comparison: its non-matches include twins (same family name, birth date and address), whom
    EM takes for matches, learning that a person's records often disagree on identifiers (4% of
    them in the demo, against none in truth), which then lets twins link.
    """
    has = set(fields)
    blocks: list[Any] = [block_on(identifier_column(s)) for s in schemes]
    if "name" in has:
        blocks.append(block_on("given_name", "family_name"))
    if "date_of_birth" in has and (not schemes or "name" not in has):
        blocks.append(block_on("date_of_birth"))
    if not blocks:
        raise ModelError("cannot train: map a date of birth, or both name fields")
    return blocks


def load_model(config: ProjectConfig) -> ModelArtefact:
    """The configured model version, or the newest one.

    Raises:
        ModelError: when there is no model yet, with the command that trains one.
    """
    root = config.model.dir
    versions = (
        sorted(p for p in root.glob("*") if (p / "metadata.json").exists()) if root.exists() else []
    )
    if config.model.version:
        versions = [p for p in versions if p.name == config.model.version]
        if not versions:
            raise ModelError(
                f"model version {config.model.version!r} not found in {root}; "
                "remove `model.version` to use the newest or run `linkage train`"
            )
    if not versions:
        raise ModelError(
            f"no trained model in {root}; run `linkage train --config {config.config_path}`"
        )
    path = versions[-1]
    meta = json.loads((path / "metadata.json").read_text())
    return ModelArtefact(
        path, meta["version"], tuple(meta["fields"]), tuple(meta["identifier_schemes"])
    )
