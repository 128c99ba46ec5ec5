"""Publish a linked run as an immutable DuckDB release; switch ``current.duckdb`` to it atomically.

Layout of ``paths.index_dir``::

    releases/<run_id>.duckdb   one read-only (0444) file per published run
    current.duckdb             symlink to the current release; replaced with one rename()

A reader that opened the previous release keeps reading it; a new connection sees the new one.
A run that fails before the rename leaves ``current.duckdb`` untouched.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb

from linkage.cluster import CARRIED
from linkage.db import order_by, quote, sql_str
from linkage.errors import PublishError
from linkage.identity import assign_person_ids
from linkage.incremental import detail_columns
from linkage.model import NAME_KEY
from linkage.runlog import RunRecord
from linkage.standardise.nicknames import VARIANTS_COLUMN

log = logging.getLogger(__name__)

CURRENT = "current.duckdb"
RELEASES = "releases"

# Documented in docs/index-tables.md; the order here is the order of the columns.
PERSON_ATTRIBUTES = ("given_name", "family_name", "date_of_birth", "sex", "postcode")


@dataclass(frozen=True)
class PublishResult:
    release_path: Path
    current_path: Path
    records: int
    persons: int
    links: int
    record: RunRecord
    """The run's record as published (with its counts and release path)."""


def current_release(index_dir: Path) -> Path | None:
    """The file ``current.duckdb`` points to, or None before the first publish."""
    link = index_dir / CURRENT
    return link.resolve() if link.exists() else None


def releases(index_dir: Path) -> list[Path]:
    """Published release files, oldest first (run ids sort in start order)."""
    return sorted(p.resolve() for p in (index_dir / RELEASES).glob("*.duckdb"))


def switch_current(index_dir: Path, release: Path) -> None:
    """Point ``current.duckdb`` at ``release`` with one rename (readers see old or new)."""
    tmp_link = index_dir / f".{CURRENT}.{release.stem}"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(Path(RELEASES) / release.name)
    os.replace(tmp_link, index_dir / CURRENT)
    _fsync_dir(index_dir)


def prune_releases(index_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` releases, never the current one; return those deleted.

    A reader that has a deleted release open keeps reading it (the file lives until closed).
    """
    current = current_release(index_dir)
    old = [r for r in releases(index_dir)[:-keep] if r.resolve() != current]
    for r in old:
        r.unlink()
    if old:
        log.info("removed %d old release(s), keeping the newest %d", len(old), keep)
    return old


def rollback(index_dir: Path, to: str | None = None) -> tuple[Path, Path]:
    """Point ``current.duckdb`` back at the release before the current one (or at run ``to``).

    Returns (from, to). Raises PublishError when there is nothing to roll back to.
    """
    current = current_release(index_dir)
    kept = releases(index_dir)
    if current is None or current not in kept:
        raise PublishError(f"no current release in {index_dir}; nothing to roll back")
    if to is None:
        older = kept[: kept.index(current)]
        if not older:
            raise PublishError(
                f"{current.name} is the oldest release kept in {index_dir / RELEASES}; "
                "there is nothing older to roll back to"
            )
        target = older[-1]
    else:
        target = (index_dir / RELEASES / f"{to}.duckdb").resolve()
        if target not in kept:
            raise PublishError(
                f"no release {to!r} in {index_dir / RELEASES}; kept: "
                f"{', '.join(r.stem for r in kept)}"
            )
    switch_current(index_dir, target)
    log.warning("rolled back the current release from %s to %s", current.name, target.name)
    return current, target


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_books(con: duckdb.DuckDBPyConnection, run: RunRecord) -> None:
    """Refuse to publish when any record is unaccounted for."""
    problems = []
    for e in run.extracts:
        if not e.balanced:
            problems.append(
                f"{e.agency}: delivered {e.delivered} != accepted {e.accepted} + quarantined "
                f"{e.quarantined} + blank lines {e.blank_lines} + duplicates {e.duplicates}"
            )
        if not e.rejected and e.accepted != e.standardised:
            problems.append(f"{e.agency}: accepted {e.accepted} but standardised {e.standardised}")
    counts = dict(con.sql("SELECT agency, count(*) FROM records GROUP BY agency").fetchall())
    for e in run.extracts:
        if counts.get(e.agency, 0) != e.standardised:
            problems.append(
                f"{e.agency}: {e.standardised} standardised records but "
                f"{counts.get(e.agency, 0)} in the linked records"
            )
    (unclustered,) = con.sql(
        "SELECT count(*) FROM records r ANTI JOIN clusters c USING (record_key)"
    ).fetchall()[0]
    if unclustered:
        problems.append(f"{unclustered} linked records have no cluster")
    if problems:
        raise PublishError(
            "the run's books do not balance, nothing published: " + "; ".join(problems)
        )


def publish(
    con: duckdb.DuckDBPyConnection,
    index_dir: Path,
    run: RunRecord,
    history: list[RunRecord],
    keep: int = 7,
    base: Path | None = None,
) -> PublishResult:
    """Write the release from the work tables ``records``, ``pairs`` and ``clusters``, then switch.

    ``run`` is this run's record (status published); ``history`` the earlier runs of the run log,
    which fill the release's ``runs`` and ``extracts`` tables together with this one. The newest
    ``keep`` releases are kept. ``base`` is the release an incremental run was linked against
    (its ``changed_records`` are the records that changed since): when it is still the current
    one, the new release is a copy of it with the changes written in (the same tables as a whole
    new release, tested), not a whole new one.

    Raises:
        PublishError: when the books do not balance or the release would be inconsistent.
    """
    _check_books(con, run)
    releases_dir = index_dir / RELEASES
    releases_dir.mkdir(parents=True, exist_ok=True)
    final = releases_dir / f"{run.run_id}.duckdb"
    partial = releases_dir / f".{run.run_id}.duckdb.partial"
    if final.exists():
        raise PublishError(f"release {final} already exists; run ids must be unique")
    for stale in (partial, partial.with_name(partial.name + ".wal")):
        stale.unlink(missing_ok=True)
    previous = current_release(index_dir)
    update = base is not None and base.resolve() == previous
    if base is not None and update:
        log.info("publishing the changes since %s", base.name)
        shutil.copyfile(base, partial)
        os.chmod(partial, 0o600)
    con.execute(f"ATTACH {sql_str(partial)} AS rel")
    try:
        _build_release(con, run, previous, update)
        records, persons, links = con.sql(
            "SELECT (SELECT count(*) FROM rel.records), (SELECT count(*) FROM rel.persons), "
            "(SELECT count(*) FROM rel.links WHERE linked)"
        ).fetchall()[0]
        done = replace(
            run,
            records=records,
            persons=persons,
            links=links,
            release=str(final),
        )
        _write_run_tables(con, [*history, done])
    finally:
        con.execute("DETACH rel")
    if partial.with_name(partial.name + ".wal").exists():
        raise PublishError(f"{partial} still has a write-ahead log after closing; not published")

    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.chmod(partial, 0o444)
    os.replace(partial, final)
    _fsync_dir(releases_dir)
    switch_current(index_dir, final)
    prune_releases(index_dir, keep)
    log.info("published %s: %d records, %d persons, %d links", final, records, persons, links)
    return PublishResult(final, index_dir / CURRENT, records, persons, links, done)


def _build_release(
    con: duckdb.DuckDBPyConnection, run: RunRecord, previous: Path | None, update: bool
) -> None:
    if previous is not None:
        con.execute(f"ATTACH {sql_str(previous)} AS prev (READ_ONLY)")
    try:
        carried = CARRIED if update else None  # the persons carried over from `previous`
        assign_person_ids(con, run.run_id, previous=previous is not None, carried=carried)
    finally:
        if previous is not None:
            con.execute("DETACH prev")
    # Each record's person, and each pair's two (narrow, one join per statement: the records
    # and pairs themselves are joined in only where written).
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __person_of AS "
        "SELECT c.record_key, m.person_id FROM clusters c JOIN person_map m USING (cluster_id)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __pair_l AS SELECT p.record_key_l, p.record_key_r, "
        "o.person_id AS person_id_l FROM pairs p "
        "JOIN __person_of o ON o.record_key = p.record_key_l"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __pair_persons AS SELECT p.*, o.person_id AS person_id_r "
        "FROM __pair_l p JOIN __person_of o ON o.record_key = p.record_key_r"
    )
    con.execute("DROP TABLE __pair_l")
    if update:
        _write_changes(con)
    else:
        (rows,) = con.sql("SELECT count(*) FROM records").fetchall()[0]
        # Sorted, unless the memory limit is too small for it.
        order = functools.partial(order_by, con, rows)
        con.execute(f"CREATE TABLE rel.records AS {_records_sql()}{order('person_id, record_key')}")
        _persons(con, "CREATE TABLE rel.persons AS", order=order("person_id"))
        con.execute(f"CREATE TABLE rel.links AS {_links_sql(con)}{order('3, 4')}")
        con.execute(f"CREATE TABLE rel.lineage AS SELECT * FROM lineage{order('ALL')}")
        con.execute(
            "CREATE VIEW rel.crosswalk AS SELECT agency, source_record_id, person_id FROM records"
        )
    for t in ("runs", "extracts"):
        con.execute(f"DROP TABLE IF EXISTS rel.{t}")
    con.execute("DROP TABLE __person_of; DROP TABLE __pair_persons")


def _records_sql(where: str = "") -> str:
    """The release's records (with their person), from the work tables."""
    return (
        f"SELECT p.person_id, r.* EXCLUDE ({VARIANTS_COLUMN}, {NAME_KEY}) FROM records r "
        f"JOIN __person_of p USING (record_key) {where}"
    )


def _links_sql(con: duckdb.DuckDBPyConnection, where: str = "") -> str:
    """The release's links (the scored pairs with their decisions and persons)."""
    details = "".join(f", p.{quote(c)}" for c in detail_columns(con, "pairs"))
    return f"""
        SELECT o.person_id_l, o.person_id_r,
               p.record_key_l, p.record_key_r, p.match_weight, p.match_probability,
               p.linked, p.grade, p.veto {details}
        FROM pairs p JOIN __pair_persons o USING (record_key_l, record_key_r) {where}
    """


def _persons(
    con: duckdb.DuckDBPyConnection, write: str, only: str = "", order: str = " ORDER BY person_id"
) -> None:
    """Write (``write``: the start of a CREATE or INSERT) the persons of ``rel.records`` (those in
    table ``only``, or all), each with the best known value of each attribute, in ``order``."""
    among = f"person_id IN (SELECT person_id FROM {only})" if only else "true"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __persons AS
        SELECT person_id, sum(n)::BIGINT AS record_count, count(*) AS agency_count,
               list_sort(list(agency)) AS agencies
        FROM (SELECT person_id, agency, count(*) AS n FROM rel.records WHERE {among} GROUP BY ALL)
        GROUP BY person_id
    """)
    # Survivorship: each attribute is the value held by most of the person's records;
    # ties go to the value from the alphabetically first agency, then the smallest value.
    # One attribute per statement, so that only one hash table is held at a time (they spill to
    # disk under the memory limit; five joins in one statement hold all five).
    for a in PERSON_ATTRIBUTES:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE __persons AS
            SELECT p.*, b.{a} FROM __persons p LEFT JOIN (
                SELECT person_id, arg_min({a}, (-n, ag, {a})) AS {a} FROM (
                    SELECT person_id, {a}, count(*) AS n, min(agency) AS ag
                    FROM rel.records WHERE {a} IS NOT NULL AND {among}
                    GROUP BY ALL)
                GROUP BY person_id) b USING (person_id)
        """)
    con.execute(f"{write} SELECT * FROM __persons{order}")
    con.execute("DROP TABLE __persons")


def _write_changes(con: duckdb.DuckDBPyConnection) -> None:
    """Turn ``rel`` (a copy of the release the run was linked against) into this run's release:
    rewrite the records that changed (content or person) or went, the persons they were or are
    in, the links whose pair, score, decision or persons changed, and add this run's lineage."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE __touched AS
        SELECT record_key FROM changed_records
        UNION SELECT record_key FROM rel.records ANTI JOIN __person_of USING (record_key)
        UNION SELECT record_key FROM rel.records r JOIN __person_of p USING (record_key)
              WHERE p.person_id <> r.person_id
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE __touched_persons AS
        SELECT person_id FROM rel.records SEMI JOIN __touched USING (record_key)
        UNION SELECT person_id FROM __person_of SEMI JOIN __touched USING (record_key)
    """)
    con.execute("DELETE FROM rel.records WHERE record_key IN (SELECT record_key FROM __touched)")
    con.execute(
        "INSERT INTO rel.records "
        + _records_sql("WHERE record_key IN (SELECT record_key FROM __touched)")
        + " ORDER BY person_id, record_key"
    )
    con.execute(
        "DELETE FROM rel.persons WHERE person_id IN (SELECT person_id FROM __touched_persons)"
    )
    _persons(con, "INSERT INTO rel.persons", only="__touched_persons")
    # A link is written again when it is new, gone, or differs in anything but its levels and
    # weights per comparison (a pair of unchanged records has the same ones).
    keys = "record_key_l, record_key_r"
    compared = "person_id_l, person_id_r, match_weight, match_probability, linked, grade, veto"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __links_now AS
        SELECT {keys}, {compared} FROM ({_links_sql(con)})
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __links_touched AS
        SELECT {keys} FROM (
            SELECT {keys}, {compared} FROM __links_now
            EXCEPT SELECT {keys}, {compared} FROM rel.links)
        UNION SELECT {keys} FROM rel.links ANTI JOIN __links_now USING ({keys})
        UNION SELECT {keys} FROM __links_now
              WHERE record_key_l IN (SELECT record_key FROM changed_records)
                 OR record_key_r IN (SELECT record_key FROM changed_records)
    """)
    con.execute(
        "DELETE FROM rel.links USING __links_touched t WHERE "
        "links.record_key_l = t.record_key_l AND links.record_key_r = t.record_key_r"
    )
    con.execute(
        f"INSERT INTO rel.links {_links_sql(con)} "
        f"SEMI JOIN __links_touched t USING ({keys}) ORDER BY 3, 4"
    )
    con.execute("INSERT INTO rel.lineage SELECT * FROM lineage_new ORDER BY ALL")
    counts = con.sql(
        "SELECT (SELECT count(*) FROM __touched), (SELECT count(*) FROM __touched_persons), "
        "(SELECT count(*) FROM __links_touched)"
    ).fetchall()[0]
    log.info("wrote %d records, %d persons and %d links that changed into a copy of it", *counts)
    for t in ("__touched", "__touched_persons", "__links_now", "__links_touched"):
        con.execute(f"DROP TABLE {t}")


def _write_run_tables(con: duckdb.DuckDBPyConnection, runs: list[RunRecord]) -> None:
    """``runs`` and ``extracts`` from the run log: every run, published or not, with its books."""
    con.execute("""
        CREATE TABLE rel.runs (
            run_id VARCHAR PRIMARY KEY, project VARCHAR, started_at TIMESTAMPTZ,
            finished_at TIMESTAMPTZ, status VARCHAR, config_path VARCHAR, model_version VARCHAR,
            trained_this_run BOOLEAN, cluster_threshold DOUBLE, records BIGINT, persons BIGINT,
            links BIGINT, link_grades JSON, vetoes JSON, override VARCHAR, gates JSON
        )""")
    con.execute("""
        CREATE TABLE rel.extracts (
            run_id VARCHAR, agency VARCHAR, source VARCHAR, sha256 VARCHAR, delivered BIGINT,
            accepted BIGINT, quarantined BIGINT, blank_lines BIGINT, duplicates BIGINT,
            standardised BIGINT, rejected VARCHAR, reused BIGINT, quality_flags JSON,
            quarantine_reasons JSON, completeness JSON, PRIMARY KEY (run_id, agency)
        )""")
    for r in runs:
        gates = json.dumps([g.__dict__ for g in r.gates])
        con.execute(
            "INSERT INTO rel.runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                r.run_id,
                r.project,
                r.started_at,
                r.finished_at,
                r.status,
                r.config_path,
                r.model_version,
                r.trained_this_run,
                r.cluster_threshold,
                r.records,
                r.persons,
                r.links,
                json.dumps(r.link_grades),
                json.dumps(r.vetoes),
                r.override,
                gates,
            ],
        )
        for e in r.extracts:
            con.execute(
                "INSERT INTO rel.extracts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    r.run_id,
                    e.agency,
                    e.source,
                    e.sha256,
                    e.delivered,
                    e.accepted,
                    e.quarantined,
                    e.blank_lines,
                    e.duplicates,
                    e.standardised,
                    e.rejected,
                    e.reused,
                    json.dumps(e.flags, sort_keys=True),
                    json.dumps(e.quarantine_reasons, sort_keys=True),
                    json.dumps(e.completeness, sort_keys=True),
                ],
            )
