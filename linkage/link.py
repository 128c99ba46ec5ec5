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
from linkage.db import quote, sql_str
from linkage.incremental import PAIR_KEYS, delta, detail_columns, predict_incremental
from linkage.model import ModelArtefact, register_tf_tables
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
    con: duckdb.DuckDBPyConnection, standardised: Sequence[Path], *, ordered: bool = False
) -> int:
    """Union the standardised extracts into table ``records``, with each given name's variants
    (:mod:`linkage.standardise.nicknames`); return its row count.

    ``ordered`` sorts them by record key, for training: it samples rows, and the same records in
    the same order give the same model. Scoring does not depend on the order, and the sort is the
    one step here that cannot run in a small memory limit."""
    files = ", ".join(sql_str(p) for p in standardised)
    nicknames = register_nicknames(con)
    con.execute(
        "CREATE OR REPLACE TABLE records AS "
        f"SELECT r.*, {variants_sql('r.given_name')} AS {VARIANTS_COLUMN} "
        f"FROM read_parquet([{files}], union_by_name=true) r "
        f"LEFT JOIN {nicknames} n ON n.nickname = r.given_name"
        + (" ORDER BY r.record_key" if ordered else "")
    )
    return con.sql("SELECT count(*) FROM records").fetchall()[0][0]


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
    check_blocking_budget(con, "records", model.settings_path, max_pairs_per_rule)
    changes: dict[str, int] = {}
    unchanged: PreviousClusters | None = None
    if previous is None:
        db_api = DuckDBAPI(connection=con)
        linker = Linker(
            db_api.register("records", dataset_display_name="records"),
            str(model.settings_path),
            log_level=logging.WARNING,  # Splink's INFO chatter is not for a nightly log
        )
        register_tf_tables(con, db_api, linker, model)
        rules = prediction_rules(model.settings_path)
        low_memory = needs_low_memory_blocking(con, "records", len(rules))
        parts = 1
        if low_memory:
            n = block_pairs(con, "records", "record_key", rules, "__blocked_pairs")
            parts = scoring_parts(con, "records", n)
            log.info(
                "blocked %d candidate pairs one rule at a time (low memory); scoring them in "
                "%d part(s)", n, parts,
            )  # fmt: skip
        for part in range(parts):
            if parts > 1:
                con.execute(
                    "CREATE OR REPLACE TABLE __blocked_part AS SELECT * FROM __blocked_pairs "
                    f"WHERE hash(join_key_l) % {parts} = {part}"
                )
            if low_memory:  # else Splink blocks and scores in one statement
                linker.table_management.register_blocked_pairs_for_predict(
                    db_api.register("__blocked_part" if parts > 1 else "__blocked_pairs")
                )
            predictions = linker.inference.predict(threshold_match_probability=predict_threshold)
            details = ", ".join(quote(c) for c in detail_columns(con, predictions.physical_name))
            select = f"SELECT {', '.join(PAIR_KEYS)}, {details} FROM {predictions.physical_name}"
            con.execute(
                f"CREATE OR REPLACE TABLE pairs AS {select}"
                if part == 0
                else f"INSERT INTO pairs {select}"
            )
            predictions.drop_table_from_database_and_remove_from_cache()
        linker.table_management.delete_tables_created_by_splink_from_db()
        con.execute("DROP TABLE IF EXISTS __blocked_pairs; DROP TABLE IF EXISTS __blocked_part")
    else:
        changes = delta(con, previous, list(identifier_columns))
        log.info("changes since the previous release: %s", changes)
        unchanged = predict_incremental(con, model, previous, predict_threshold)
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
