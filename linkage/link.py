"""Predict and cluster: score candidate pairs with the saved model, then group records into persons.

Everything stays in the run's work DuckDB file: the pair table is never pulled into Python.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from splink import DuckDBAPI, Linker

from linkage.blocking import (
    block_pairs,
    check_blocking_budget,
    needs_low_memory_blocking,
    prediction_rules,
    scoring_parts,
)
from linkage.cluster import ClusterPolicy, ClusterResult, PreviousClusters, cluster
from linkage.db import out_of_memory, quote, sql_str
from linkage.incremental import PAIR_KEYS, delta, detail_columns, predict_incremental
from linkage.model import NAME_KEY, ModelArtefact, register_tf_tables
from linkage.standardise.nicknames import VARIANTS_COLUMN, register_nicknames, variants_sql

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkResult:
    work_db: Path
    records: int
    pairs: int
    seconds: float
    clusters: ClusterResult
    """Persons, links by grade, vetoes (:func:`linkage.cluster.cluster`)."""
    mode: str = "full"
    """``full`` or ``incremental``."""
    changes: dict[str, int] = field(default_factory=dict)
    """Records new, changed, unchanged and deleted since the previous release (incremental)."""
    matching: str | None = None
    """The matching fingerprint (:func:`linkage.incremental.matching_fingerprint`)."""
    base: Path | None = None
    """The release an incremental run was linked against."""


def load_records(
    con: duckdb.DuckDBPyConnection,
    standardised: Sequence[Path],
    *,
    ordered: bool = False,
    common_names: Path | None = None,
) -> int:
    """Union the standardised extracts into table ``records``, with each given name's variants
    (:mod:`linkage.standardise.nicknames`) and the full-name blocking key (``NULL`` for a name
    of ``common_names``, a model's :func:`linkage.model.save_common_names`); return its row count.

    ``ordered`` sorts them by record key, for training: it samples rows, and the same records in
    the same order give the same model. Scoring does not depend on the order, and the sort is the
    one step here that cannot run in a small memory limit."""
    files = f"read_parquet([{', '.join(sql_str(p) for p in standardised)}], union_by_name=true)"
    # Each distinct given name's variants once (a list sort per record took longer).
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __variants AS "
        f"SELECT g.given_name, {variants_sql('g.given_name')} AS variants FROM "
        f"(SELECT DISTINCT given_name FROM {files} WHERE given_name IS NOT NULL) g "
        f"LEFT JOIN {register_nicknames(con)} n ON n.nickname = g.given_name"
    )
    key, common = "r.given_name || '|' || r.family_name", ""
    if common_names is not None:
        key = f"CASE WHEN c.given_name IS NULL THEN {key} END"
        common = (
            f" LEFT JOIN read_parquet({sql_str(common_names)}) c "
            "ON c.given_name = r.given_name AND c.family_name = r.family_name"
        )
    # A scratch table of the run's work database: written uncompressed, which took half the
    # time at 1M records (0.8 s against 1.5 s) for three times the disk (246 MB against 75 MB).
    con.execute("SET force_compression = 'uncompressed'")
    try:
        con.execute(
            "CREATE OR REPLACE TABLE records AS "
            f"SELECT r.*, v.variants AS {VARIANTS_COLUMN}, {key} AS {NAME_KEY} "
            f"FROM {files} r LEFT JOIN __variants v ON v.given_name = r.given_name{common}"
            + (" ORDER BY r.record_key" if ordered else "")
        )
    finally:
        con.execute("RESET force_compression")
    con.execute("DROP TABLE __variants")
    return con.sql("SELECT count(*) FROM records").fetchall()[0][0]


def _linker(
    con: duckdb.DuckDBPyConnection, model: ModelArtefact, table: str
) -> tuple[DuckDBAPI, Linker]:
    """A Splink linker for the saved model on ``table``, with the model's term frequencies."""
    db_api = DuckDBAPI(connection=con)
    linker = Linker(
        db_api.register(table, dataset_display_name="records"),
        str(model.settings_path),
        log_level=logging.WARNING,  # Splink's INFO chatter is not for a nightly log
    )
    register_tf_tables(con, db_api, linker, model)
    return db_api, linker


def _predict_into_pairs(
    con: duckdb.DuckDBPyConnection, linker: Linker, threshold: float, *, first: bool
) -> None:
    predictions = linker.inference.predict(  # Splink's warning of untrained levels, once
        threshold_match_probability=threshold, warning_mode="auto" if first else "never"
    )
    details = ", ".join(quote(c) for c in detail_columns(con, predictions.physical_name))
    select = f"SELECT {', '.join(PAIR_KEYS)}, {details} FROM {predictions.physical_name}"
    con.execute(
        f"CREATE OR REPLACE TABLE pairs AS {select}" if first else f"INSERT INTO pairs {select}"
    )
    predictions.drop_table_from_database_and_remove_from_cache()


def _score(con: duckdb.DuckDBPyConnection, model: ModelArtefact, threshold: float) -> None:
    """Score the candidate pairs of ``records`` into table ``pairs``.

    When Splink's one-statement blocking would not fit in the memory limit
    (:func:`needs_low_memory_blocking`), or runs out of memory all the same, the pairs are
    blocked one rule at a time (:func:`block_pairs`), and when scoring them at once would not
    fit either, scored in parts (:func:`scoring_parts`); Splink reads only the records that a
    part's pairs compare."""
    rules = prediction_rules(model.settings_path)
    if not needs_low_memory_blocking(con, "records", len(rules)):
        _, linker = _linker(con, model, "records")  # Splink blocks and scores in one statement
        try:
            _predict_into_pairs(con, linker, threshold, first=True)
            return
        except Exception as e:  # Splink wraps DuckDB's error in its own
            if not out_of_memory(e):
                raise
            log.warning(
                "Splink's one-statement blocking and scoring ran out of memory under the DuckDB "
                "memory limit (%s); blocking one rule at a time instead",
                con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0],
            )
        finally:
            linker.table_management.delete_tables_created_by_splink_from_db()
    n = block_pairs(con, "records", "record_key", rules, "__blocked_pairs")
    parts = scoring_parts(con, "records", n) if n else 1
    log.info(
        "blocked %d candidate pairs one rule at a time (low memory); scoring them in %d part(s)",
        n, parts,
    )  # fmt: skip
    db_api, linker = _linker(con, model, "records")
    if parts > 1:  # each part's number, once: selecting a part is then a cheap filter
        con.execute(
            "CREATE OR REPLACE TABLE __blocked_pairs AS "
            f"SELECT *, hash(join_key_l) % {parts} AS part FROM __blocked_pairs"
        )
    for part in range(parts):
        if parts > 1:
            con.execute(
                "CREATE OR REPLACE TABLE __part_pairs AS SELECT * EXCLUDE (part) "
                f"FROM __blocked_pairs WHERE part = {part}"
            )
        linker.table_management.register_blocked_pairs_for_predict(
            db_api.register("__part_pairs" if parts > 1 else "__blocked_pairs")
        )
        _predict_into_pairs(con, linker, threshold, first=part == 0)
        if parts > 1 and (part + 1) % max(1, parts // 10) == 0:
            log.info("scored part %d of %d", part + 1, parts)
    linker.table_management.delete_tables_created_by_splink_from_db()
    con.execute("DROP TABLE __blocked_pairs; DROP TABLE IF EXISTS __part_pairs")


def predict_and_cluster(
    con: duckdb.DuckDBPyConnection,
    model: ModelArtefact,
    policy: ClusterPolicy,
    *,
    predict_threshold: float,
    work_db: Path,
    max_pairs_per_rule: float = float("inf"),
    previous: Path | None = None,
    identifier_columns: Sequence[str] = (),
) -> LinkResult:
    """Score pairs of ``records`` into table ``pairs`` and cluster them into table ``clusters``.

    ``pairs`` holds every scored pair at or above ``predict_threshold`` with its match weight,
    probability, per-comparison levels and weights, and its decision (``linked``, ``grade``,
    ``veto``: see :mod:`linkage.cluster`); ``clusters`` maps each record_key to a cluster_id.
    With ``previous`` (a release scored with the same model and rules), only new and changed
    records are scored (:mod:`linkage.incremental`).
    """
    started = time.monotonic()
    changes: dict[str, int] = {}
    unchanged: PreviousClusters | None = None
    if previous is None:
        check_blocking_budget(con, "records", model.settings_path, max_pairs_per_rule)
        _score(con, model, predict_threshold)
    else:
        changes = delta(con, previous, list(identifier_columns))
        log.info("changes since the previous release: %s", changes)
        unchanged = predict_incremental(con, model, previous, predict_threshold, max_pairs_per_rule)
    clustered = cluster(con, policy, unchanged)
    (records,) = con.sql("SELECT count(*) FROM records").fetchall()[0]
    (pairs,) = con.sql("SELECT count(*) FROM pairs").fetchall()[0]
    result = LinkResult(
        work_db,
        records,
        pairs,
        round(time.monotonic() - started, 1),
        clustered,
        mode="full" if previous is None else "incremental",
        changes=changes,
        base=previous,
    )
    log.info(
        "linked %d records (%s): %d scored pairs, %d links (%d on trusted numbers), %d vetoed, "
        "%d persons (largest %d) in %.1fs",
        records,
        result.mode,
        pairs,
        clustered.links,
        clustered.deterministic_links,
        sum(clustered.vetoes.values()),
        clustered.persons,
        clustered.largest_person,
        result.seconds,
    )
    return result
