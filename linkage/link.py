"""Predict and cluster: score candidate pairs with the saved model, then group records into persons.

Everything stays in the run's work DuckDB file: the pair table is never pulled into Python.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
from splink import DuckDBAPI, Linker

from linkage.db import sql_str
from linkage.model import ModelArtefact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkResult:
    work_db: Path
    records: int
    pairs: int
    links: int
    persons: int
    largest_person: int
    seconds: float


def load_records(con: duckdb.DuckDBPyConnection, standardised: Sequence[Path]) -> int:
    """Union the standardised extracts into table ``records``; return its row count."""
    files = ", ".join(sql_str(p) for p in standardised)
    con.execute(
        "CREATE OR REPLACE TABLE records AS "
        f"SELECT * FROM read_parquet([{files}], union_by_name=true)"
    )
    return con.sql("SELECT count(*) FROM records").fetchall()[0][0]


def predict_and_cluster(
    con: duckdb.DuckDBPyConnection,
    model: ModelArtefact,
    *,
    predict_threshold: float,
    cluster_threshold: float,
    work_db: Path,
) -> LinkResult:
    """Score pairs of ``records`` into table ``pairs`` and cluster them into table ``clusters``.

    ``pairs`` holds every scored pair at or above ``predict_threshold`` with its match weight,
    probability and per-comparison levels; ``clusters`` maps each record_key to a cluster_id.
    """
    started = time.monotonic()
    db_api = DuckDBAPI(connection=con)
    linker = Linker(
        db_api.register("records", dataset_display_name="records"),
        str(model.settings_path),
        log_level=logging.WARNING,  # Splink's INFO chatter is not for a nightly log
    )
    predictions = linker.inference.predict(threshold_match_probability=predict_threshold)
    con.execute(f"CREATE OR REPLACE TABLE pairs AS SELECT * FROM {predictions.physical_name}")
    clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=cluster_threshold
    )
    con.execute(
        "CREATE OR REPLACE TABLE clusters AS "
        f"SELECT record_key, cluster_id FROM {clustered.physical_name}"
    )
    linker.table_management.delete_tables_created_by_splink_from_db()
    (records,) = con.sql("SELECT count(*) FROM records").fetchall()[0]
    (pairs,) = con.sql("SELECT count(*) FROM pairs").fetchall()[0]
    (links,) = con.execute(
        "SELECT count(*) FROM pairs WHERE match_probability >= ?", [cluster_threshold]
    ).fetchall()[0]
    persons, largest = con.sql(
        "SELECT count(*), max(n) FROM (SELECT count(*) AS n FROM clusters GROUP BY cluster_id)"
    ).fetchall()[0]
    result = LinkResult(
        work_db, records, pairs, links, persons, largest or 0, round(time.monotonic() - started, 1)
    )
    log.info(
        "linked %d records: %d scored pairs, %d links, %d persons (largest %d) in %.1fs",
        records,
        pairs,
        links,
        persons,
        result.largest_person,
        result.seconds,
    )
    return result
