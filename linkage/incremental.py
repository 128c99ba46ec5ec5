"""Incremental linking: score only what changed since the previous release.

A nightly extract differs from yesterday's by a percent or two. Each record is fingerprinted by
its canonical content; against the previous release every record is new, changed, unchanged or
(absent now) deleted. Pairs of two unchanged records are taken from the previous release's
``links`` (same model, same term frequencies, same thresholds: the same scores a full run would
compute, because a blocking rule and a score depend on the two records only); new and changed
records are scored against the unchanged ones (Splink ``predict_between``) and among themselves
(``predict_within``). Only the affected persons are then clustered again (those holding a
changed or deleted record or a new pair, with every component linked to them); the others keep
their previous clusters, which are what clustering the same pairs again would give, so an
incremental run and a full run over the same data give the same persons (tested).

A full run is used instead when there is no previous release, when the matching fingerprint
(the model file, its term frequencies and the settings that decide links) differs from the
previous run's, or when asked for.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import duckdb
import numpy as np
from splink import DuckDBAPI, Linker

from linkage.blocking import check_blocking_budget, prediction_rules, rule_keys
from linkage.cluster import CLUSTER_VETOES, ClusterPolicy, PreviousClusters
from linkage.config import Agency, IdentifierScheme
from linkage.db import quote, sql_str
from linkage.model import ModelArtefact, register_tf_tables
from linkage.standardise.nicknames import nickname_pairs
from schemas.canonical import CANONICAL_FIELDS, SOURCE_HASH

log = logging.getLogger(__name__)

#: Columns of a scored pair kept for clustering and publishing (then the per-comparison ones).
PAIR_KEYS = ("record_key_l", "record_key_r", "match_weight", "match_probability")
DETAIL_PREFIXES = ("gamma_", "bf_", "mw_")


def matching_fingerprint(
    model: ModelArtefact, policy: ClusterPolicy, predict_threshold: float
) -> str:
    """What decides the links: the model (with its term frequencies and common names), the
    clustering rules (their settings and their code) and the given-name variants."""
    h = hashlib.sha256(model.settings_path.read_bytes())
    files = [path for _, path in sorted(model.tf_tables().items())]
    if model.common_names is not None:
        files.append(model.common_names)
    for path in files:
        h.update(path.read_bytes())
    h.update(json.dumps([asdict(policy), predict_threshold], sort_keys=True).encode())
    h.update((Path(__file__).parent / "cluster.py").read_bytes())
    h.update(repr(nickname_pairs()).encode())  # the given-name variants the model compares
    return h.hexdigest()[:16]


def detail_columns(con: duckdb.DuckDBPyConnection, table: str, database: str = "") -> list[str]:
    """The per-comparison columns (levels and weights) of a pair table."""
    where = f"AND database_name = '{database}'" if database else ""
    return [
        c
        for (c,) in con.execute(
            f"SELECT column_name FROM duckdb_columns() WHERE table_name = ? {where} "
            "ORDER BY column_index",
            [table],
        ).fetchall()
        if c.startswith(DETAIL_PREFIXES)
    ]


def _fingerprint_sql(alias: str, identifier_columns: list[str]) -> str:
    """A record's canonical content as DuckDB's 64-bit hash: both sides of :func:`delta` are
    hashed in the same run (so it need not be stable across versions), and it is ten times
    faster than an md5 of the content as text; two contents of one record key colliding is a
    2^-64 chance per changed record."""
    cols = [f.name for f in CANONICAL_FIELDS] + identifier_columns
    fields = ", ".join(f"{quote(c)} := {alias}.{quote(c)}" for c in cols)
    return f"hash(struct_pack({fields}))"


def delta(
    con: duckdb.DuckDBPyConnection, previous: Path, identifier_columns: list[str]
) -> dict[str, int]:
    """Compare ``records`` with the previous release: tables ``changed_records`` (new or changed
    record keys; kept in the work database for publishing) and ``__unchanged``; returns counts of
    new, changed, unchanged and deleted records."""
    con.execute(f"ATTACH {sql_str(previous)} AS prev (READ_ONLY)")
    try:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE __prev_fp AS
            SELECT record_key, {_fingerprint_sql("p", identifier_columns)} AS fp FROM prev.records p
        """)
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE __now_fp AS
            SELECT record_key, {_fingerprint_sql("r", identifier_columns)} AS fp FROM records r
        """)
    finally:
        con.execute("DETACH prev")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE __unchanged AS
        SELECT record_key FROM __now_fp JOIN __prev_fp USING (record_key, fp)
    """)
    con.execute(
        "CREATE OR REPLACE TABLE changed_records AS "
        "SELECT record_key FROM __now_fp ANTI JOIN __unchanged USING (record_key)"
    )
    (new, changed, unchanged, deleted) = con.sql("""
        SELECT (SELECT count(*) FROM changed_records ANTI JOIN __prev_fp USING (record_key)),
               (SELECT count(*) FROM changed_records SEMI JOIN __prev_fp USING (record_key)),
               (SELECT count(*) FROM __unchanged),
               (SELECT count(*) FROM __prev_fp ANTI JOIN __now_fp USING (record_key))
    """).fetchall()[0]
    con.execute("DROP TABLE __prev_fp; DROP TABLE __now_fp")
    return {"new": new, "changed": changed, "unchanged": unchanged, "deleted": deleted}


def _neighbours_sql(rules: Sequence[str]) -> str:
    """SQL for the keys of the records sharing some blocking rule's key with a changed record:
    the only records a changed one can be compared with, as every rule is a conjunction of
    equalities (:func:`linkage.blocking.rule_keys`). Both directions, for a rule comparing two
    columns (a given name with a family name)."""
    selects = set()
    for rule in rules:
        keys = rule_keys(rule)
        for pairs in (keys, [(b, a) for a, b in keys]):
            mine = ", ".join(f"{b} AS k{i}" for i, (_, b) in enumerate(pairs))
            theirs = ", ".join(f"{a} AS k{i}" for i, (a, _) in enumerate(pairs))
            using = ", ".join(f"k{i}" for i in range(len(pairs)))
            selects.add(
                f"SELECT record_key FROM (SELECT record_key, {mine} FROM records) "
                f"SEMI JOIN (SELECT {theirs} FROM __delta_records) USING ({using})"
            )
    return " UNION ".join(sorted(selects))


def predict_incremental(
    con: duckdb.DuckDBPyConnection,
    model: ModelArtefact,
    previous: Path,
    predict_threshold: float,
    max_pairs_per_rule: float = float("inf"),
) -> PreviousClusters:
    """Write table ``pairs``: the previous release's pairs of unchanged records, and the changed
    records scored against the unchanged ones and among themselves (needs :func:`delta` first).

    The blocking budget is checked on the records compared: the changed ones and the unchanged
    ones sharing a blocking key with one (never more pairs than a check on every record).

    Returns the tables :func:`linkage.cluster.cluster` needs to re-cluster only the affected
    persons; the seeds are the changed records, the records of new pairs, and the unchanged
    records of every previous person that lost or changed a record."""
    db_api = DuckDBAPI(connection=con)
    linker = Linker(
        db_api.register("records", dataset_display_name="records"),
        str(model.settings_path),
        log_level=logging.WARNING,
    )
    register_tf_tables(con, db_api, linker, model)
    # Copies of the changed records (few) and of the unchanged ones that can meet one: Splink
    # prepares every record it is given, so giving it only those is what is quick.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __delta_records AS SELECT * FROM records "
        "WHERE record_key IN (SELECT record_key FROM changed_records)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __kept_records AS SELECT * FROM records WHERE record_key "
        f"IN ({_neighbours_sql(prediction_rules(model.settings_path))}) "
        "AND record_key NOT IN (SELECT record_key FROM changed_records)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW __compared AS "
        "SELECT * FROM __delta_records UNION ALL SELECT * FROM __kept_records"
    )
    check_blocking_budget(con, "__compared", model.settings_path, max_pairs_per_rule)
    changed = db_api.register("__delta_records", dataset_display_name="changed")
    kept = db_api.register("__kept_records", dataset_display_name="unchanged")
    between = linker.inference.predict_between(
        changed, kept, threshold_match_probability=predict_threshold
    )
    within = linker.inference.predict_within(  # Splink's untrained-levels warning: once
        changed, threshold_match_probability=predict_threshold, warning_mode="never"
    )
    details = detail_columns(con, between.physical_name)
    cols = ", ".join(quote(c) for c in details)
    scored = " UNION ALL ".join(
        f"SELECT least(record_key_l, record_key_r) AS record_key_l, "
        f"greatest(record_key_l, record_key_r) AS record_key_r, match_weight, match_probability, "
        f"{cols} FROM {t.physical_name}"
        for t in (between, within)
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE __scored AS {scored}")
    both_unchanged = (
        "record_key_l IN (SELECT record_key FROM __unchanged) "
        "AND record_key_r IN (SELECT record_key FROM __unchanged)"
    )
    con.execute(f"ATTACH {sql_str(previous)} AS prev (READ_ONLY)")
    try:
        con.execute(f"""
            CREATE OR REPLACE TABLE pairs AS
            SELECT {", ".join(PAIR_KEYS)}, {cols} FROM prev.links WHERE {both_unchanged}
            UNION ALL SELECT * FROM __scored
        """)
        # What clustering needs to re-cluster only the affected persons (linkage.cluster).
        con.execute(
            "CREATE OR REPLACE TEMP TABLE __previous_persons AS SELECT record_key, person_id "
            "FROM prev.records SEMI JOIN __unchanged USING (record_key)"
        )
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE __previous_refusals AS
            SELECT record_key_l, record_key_r, veto FROM prev.links
            WHERE veto IN {CLUSTER_VETOES} AND {both_unchanged}
        """)
        con.execute("""
            CREATE OR REPLACE TEMP TABLE __seeds AS
            SELECT record_key FROM changed_records
            UNION SELECT record_key_l FROM __scored UNION SELECT record_key_r FROM __scored
            UNION SELECT record_key FROM __previous_persons WHERE person_id IN (
                SELECT person_id FROM prev.records ANTI JOIN __unchanged USING (record_key))
        """)
    finally:
        con.execute("DETACH prev")
    con.execute("DROP TABLE __scored")
    linker.table_management.delete_tables_created_by_splink_from_db()
    con.execute("DROP VIEW __compared; DROP TABLE __kept_records; DROP TABLE __delta_records")
    return PreviousClusters("__seeds", "__previous_persons", "__previous_refusals")


# --- incremental intake ---------------------------------------------------------------------------
#
# Validation and standardisation are pure functions of a delivered row, its contract, the agency's
# mapping, the identifier settings and this code. So a row delivered exactly as last time (same
# digest of its values) that the current release holds already passed the contract's row rules
# and was standardised to the record the release holds: that record is reused. Rules on the whole
# extract (row count, share of missing values) are checked on every row again, and ``unique`` on
# the new and changed rows with the known rows sharing a value with one. Anything that could
# change a verdict or a record (the contract file, the agency's configuration, the identifier
# settings, the code of validation and standardisation, the library versions) is in the intake
# fingerprint: when it differs from the one the current release was built with, every row is
# validated and standardised again.
# Standardisation reads the date only to flag birth dates in the future; a reused record keeps
# the flag it was given (a full run, `linkage run --full`, re-reads every row).

_INTAKE_CODE = ("validate.py", "gx_expectations.py", "contracts.py", "standardise", "sources")


def intake_fingerprint(agency: Agency, identifiers: Mapping[str, IdentifierScheme]) -> str:
    """What decides how an agency's delivered rows are validated and standardised."""
    import great_expectations
    import polars

    h = hashlib.sha256(agency.contract.read_bytes())
    # Not where the contract and the delivery are: the contract's content is hashed above, and
    # a row read differently (a new delimiter, say) has other values, so another digest.
    h.update(agency.model_dump_json(exclude={"contract", "source"}).encode())
    h.update(json.dumps({k: v.model_dump(mode="json") for k, v in identifiers.items()}).encode())
    versions = (duckdb.__version__, polars.__version__, great_expectations.__version__)
    h.update(repr(versions).encode())
    root = Path(__file__).parent
    for name in _INTAKE_CODE:
        for path in (
            sorted((root / name).rglob("*.py")) if (root / name).is_dir() else [root / name]
        ):
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def source_hash_sql(columns: Sequence[str]) -> str:
    """SQL for the digest of a delivered row's values (``NULL`` and ``''`` differ)."""
    fields = ", ".join(f"{quote(c)} := {quote(c)}" for c in columns)
    return f"md5(to_json(struct_pack({fields})))"


def known_lines(
    con: duckdb.DuckDBPyConnection, accepted: Path, columns: Sequence[str], release: Path,
    agency: str, digests: Path,
) -> np.ndarray:  # fmt: skip
    """The ``_line`` of each accepted row that ``release`` holds, as delivered, for ``agency``.

    Writes each accepted row's ``_line`` and digest to ``digests``, for :func:`split_known`: the
    digest is the costly part, and validation keeps or drops rows but never changes one."""
    con.execute(
        f"COPY (SELECT _line, {source_hash_sql(columns)} AS {SOURCE_HASH} "
        f"FROM read_parquet({sql_str(accepted)})) TO {sql_str(digests)} (FORMAT parquet)"
    )
    con.execute(f"ATTACH {sql_str(release)} AS prev (READ_ONLY)")
    try:
        return con.execute(
            f"SELECT d._line FROM read_parquet({sql_str(digests)}) d "
            f"SEMI JOIN (SELECT {SOURCE_HASH} FROM prev.records WHERE agency = ?) p "
            f"USING ({SOURCE_HASH})",
            [agency],
        ).fetchnumpy()["_line"]
    finally:
        con.execute("DETACH prev")


def split_known(
    con: duckdb.DuckDBPyConnection, accepted: Path, columns: Sequence[str],
    release: Path | None, agency: str, fresh: Path, digests: Path | None = None,
) -> int:  # fmt: skip
    """Split an agency's accepted rows: the digests of the rows ``release`` holds as delivered go
    to temporary table ``known_hashes`` (for :func:`write_with_known`); the other rows to
    ``fresh`` (the rows, with their digest), to be standardised. Returns the number of known
    records. The digests are taken from ``digests`` (:func:`known_lines`) when it exists."""
    source = f"read_parquet({sql_str(accepted)})"
    rows = f"SELECT *, {source_hash_sql(columns)} AS {SOURCE_HASH} FROM {source}"
    if digests is not None and digests.exists():
        rows = (
            f"SELECT a.*, d.{SOURCE_HASH} FROM {source} a "
            f"JOIN read_parquet({sql_str(digests)}) d USING (_line)"
        )
    if release is None:
        con.execute(f"COPY ({rows}) TO {sql_str(fresh)} (FORMAT parquet)")
        return 0
    con.execute(f"CREATE TEMP TABLE __delivered AS {rows}")  # each row's digest once
    con.execute(f"ATTACH {sql_str(release)} AS prev (READ_ONLY)")
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE known_hashes AS SELECT {SOURCE_HASH} "
            f"FROM prev.records SEMI JOIN __delivered USING ({SOURCE_HASH}) WHERE agency = ?",
            [agency],
        )
    finally:
        con.execute("DETACH prev")
    con.execute(
        f"COPY (SELECT * FROM __delivered ANTI JOIN known_hashes USING ({SOURCE_HASH})) "
        f"TO {sql_str(fresh)} (FORMAT parquet)"
    )
    con.execute("DROP TABLE __delivered")
    (n,) = con.sql("SELECT count(*) FROM known_hashes").fetchall()[0]
    return int(n)


def write_with_known(
    con: duckdb.DuckDBPyConnection, new: Path, release: Path, agency: str, final: Path
) -> None:
    """Write the standardised records ``new`` and the records ``release`` holds for the digests
    of :func:`split_known` (without their person) to ``final``."""
    con.execute(f"ATTACH {sql_str(release)} AS prev (READ_ONLY)")
    try:
        con.execute(
            f"COPY (SELECT * FROM read_parquet({sql_str(new)}) UNION ALL BY NAME "
            f"SELECT r.* EXCLUDE (person_id) FROM prev.records r "
            f"SEMI JOIN known_hashes USING ({SOURCE_HASH}) WHERE r.agency = ?) "
            f"TO {sql_str(final)} (FORMAT parquet)",
            [agency],
        )
    finally:
        con.execute("DETACH prev")
