"""Stable person IDs: a person ID, once issued, keeps meaning the same person across runs.

Each run's clusters inherit IDs from the previous release by record overlap:

* an old ID goes to the new cluster holding most of its records (a **split** leaves the largest
  part with the ID; ties go to the cluster with the smallest record key);
* a cluster that wins several old IDs (a **merge**) keeps the oldest (first issued; then the
  smallest) and the others are retired with a redirect (``merged_into``);
* a cluster that wins none gets a new ID (``created``, or ``split_from`` when some of its records
  had an ID before); an old ID with no record left is ``retired``.

New IDs are ``P`` + 16 hex digits of SHA-256 of the cluster's smallest record key, salted when
that ID was ever issued before, so IDs never depend on row order and are never reused. Every event
is appended to the lineage with the run that caused it; the lineage travels with each release.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import duckdb
import pyarrow as pa

EVENTS = ("created", "split_from", "merged_into", "retired")

LINEAGE_COLUMNS = (
    "run_id VARCHAR, event VARCHAR, person_id VARCHAR, related_person_id VARCHAR, records BIGINT"
)


@dataclass(frozen=True)
class IdentityResult:
    persons: int
    kept: int
    """Persons whose ID came from the previous release."""
    events: dict[str, int]


def new_person_id(min_record_key: str, issued: set[str]) -> str:
    """The ID for a new person whose smallest record key is ``min_record_key``.

    >>> new_person_id("nhs:1", set())
    'P3936bc41e94d583b'
    >>> new_person_id("nhs:1", {"P3936bc41e94d583b"}) != "P3936bc41e94d583b"
    True
    """
    salt = 0
    while True:
        text = min_record_key if salt == 0 else f"{min_record_key}#{salt}"
        pid = "P" + hashlib.sha256(text.encode()).hexdigest()[:16]
        if pid not in issued:
            return pid
        salt += 1


def _issue_ids(con: duckdb.DuckDBPyConnection, issued: str) -> None:
    """Table ``__fresh(cluster_id, person_id, n, split_from)``: a new ID for each cluster of
    ``__unkept``, as :func:`new_person_id` gives them in cluster order, none of them in the
    query ``issued``. Computed in SQL; only when one collides (with an issued ID or another new
    one) are they all issued again one at a time in Python, which salts the colliding ones."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE __fresh AS
        SELECT f.cluster_id, 'P' || sha256(f.cluster_id)[:16] AS person_id, f.n,
               b.old_id AS split_from
        FROM __unkept f LEFT JOIN __biggest_old b USING (cluster_id)
    """)
    (collides,) = con.sql(f"""
        SELECT EXISTS (SELECT 1 FROM __fresh GROUP BY person_id HAVING count(*) > 1)
            OR EXISTS (SELECT 1 FROM __fresh SEMI JOIN ({issued}) USING (person_id))
    """).fetchall()[0]
    if not collides:
        return
    taken = {r[0] for r in con.sql(issued).fetchall()}
    fresh = con.sql(
        "SELECT cluster_id, n, split_from FROM __fresh ORDER BY cluster_id"
    ).to_arrow_table()
    new_ids = []
    for cluster_id in fresh.column("cluster_id").to_pylist():
        pid = new_person_id(cluster_id, taken)
        taken.add(pid)
        new_ids.append(pid)
    con.register("__fresh_rows", fresh.append_column("person_id", pa.array(new_ids, pa.string())))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __fresh AS "
        "SELECT cluster_id, person_id, n, split_from FROM __fresh_rows"
    )
    con.unregister("__fresh_rows")


def assign_person_ids(
    con: duckdb.DuckDBPyConnection, run_id: str, previous: bool, carried: str | None = None
) -> IdentityResult:
    """Write ``person_map(cluster_id, person_id)``, ``lineage_new`` (this run's events) and
    ``lineage`` (the previous release's lineage followed by this run's events).

    Reads ``clusters(record_key, cluster_id)``; with ``previous``, also ``prev.records(record_key,
    person_id)`` and ``prev.lineage`` of the previous release (attached as ``prev``). A cluster's
    ``cluster_id`` must be its smallest record key, except for the clusters listed in table
    ``carried(cluster_id)`` (an incremental run): previous persons carried over whole, each with
    its person ID as cluster ID, and no record of theirs in another cluster. Such a person wins
    its own ID and nothing else, so only the other clusters are looked at.
    """
    con.execute(f"CREATE OR REPLACE TEMP TABLE lineage_new ({LINEAGE_COLUMNS})")
    if (
        previous
        and not con.sql(
            "SELECT 1 FROM duckdb_tables() WHERE database_name = 'prev' AND table_name = 'lineage'"
        ).fetchall()
    ):
        # A release from before lineage was kept: its IDs are known, not their history.
        con.execute(f"CREATE OR REPLACE TEMP TABLE __prev_lineage ({LINEAGE_COLUMNS})")
        lineage = "__prev_lineage"
    else:
        lineage = "prev.lineage"
    clusters = "clusters"
    if carried is not None:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE __clusters AS "
            f"SELECT * FROM clusters ANTI JOIN {carried} USING (cluster_id)"
        )
        clusters = "__clusters"
    if previous:
        # One join or aggregate per statement (so that each spills under the memory limit).
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE __overlap AS
            SELECT c.cluster_id, p.person_id AS old_id
            FROM {clusters} c JOIN prev.records p USING (record_key)
        """)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE __overlap AS "
            "SELECT cluster_id, old_id, count(*) AS n FROM __overlap GROUP BY ALL"
        )
        # Who issued each old ID first (the oldest ID survives a merge).
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE __born AS
            SELECT person_id AS old_id, min(run_id) AS born FROM {lineage}
            WHERE event IN ('created', 'split_from') GROUP BY 1
        """)
        con.execute("""
            CREATE OR REPLACE TEMP TABLE __winner AS
            SELECT old_id, cluster_id FROM __overlap
            QUALIFY row_number() OVER (PARTITION BY old_id ORDER BY n DESC, cluster_id) = 1
        """)
        con.execute("""
            CREATE OR REPLACE TEMP TABLE __kept AS
            SELECT w.cluster_id, w.old_id AS person_id
            FROM __winner w LEFT JOIN __born b USING (old_id)
            QUALIFY row_number() OVER (
                PARTITION BY w.cluster_id ORDER BY b.born NULLS LAST, w.old_id) = 1
        """)
        con.execute(
            """
            INSERT INTO lineage_new
            SELECT ?, 'merged_into', w.old_id, k.person_id, o.n
            FROM __winner w JOIN __kept k USING (cluster_id)
            JOIN __overlap o ON o.old_id = w.old_id AND o.cluster_id = w.cluster_id
            WHERE w.old_id <> k.person_id
            """,
            [run_id],
        )
        issued = f"SELECT person_id FROM {lineage} UNION SELECT person_id FROM prev.records"
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE __kept (cluster_id VARCHAR, person_id VARCHAR)")
        con.execute(
            "CREATE OR REPLACE TEMP TABLE __overlap (cluster_id VARCHAR, old_id VARCHAR, n BIGINT)"
        )
        issued = "SELECT NULL::VARCHAR AS person_id WHERE false"

    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __unkept AS
        SELECT cluster_id, count(*) AS n FROM {clusters} GROUP BY 1
    """)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __unkept AS FROM __unkept ANTI JOIN __kept USING (cluster_id)"
    )
    con.execute("""
        CREATE OR REPLACE TEMP TABLE __biggest_old AS
        SELECT cluster_id, old_id FROM __overlap
        QUALIFY row_number() OVER (PARTITION BY cluster_id ORDER BY n DESC, old_id) = 1
    """)
    _issue_ids(con, issued)
    con.execute(
        """
        INSERT INTO lineage_new
        SELECT ?, CASE WHEN split_from IS NULL THEN 'created' ELSE 'split_from' END,
               person_id, split_from, n
        FROM __fresh
        """,
        [run_id],
    )
    if carried is not None:
        con.execute(f"INSERT INTO __kept SELECT cluster_id, cluster_id FROM {carried}")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE person_map AS
        SELECT cluster_id, person_id FROM __kept UNION ALL SELECT cluster_id, person_id FROM __fresh
    """)
    if previous:
        con.execute(
            """
            INSERT INTO lineage_new
            SELECT ?, 'retired', p.person_id, NULL, NULL
            FROM (SELECT DISTINCT person_id FROM prev.records) p
            WHERE p.person_id NOT IN (SELECT person_id FROM person_map)
              AND p.person_id NOT IN (SELECT person_id FROM lineage_new WHERE event = 'merged_into')
            """,
            [run_id],
        )
    history = lineage if previous else "lineage_new WHERE false"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE lineage AS SELECT * FROM {history} "
        "UNION ALL SELECT * FROM lineage_new"
    )
    events = dict(con.sql("SELECT event, count(*) FROM lineage_new GROUP BY 1").fetchall())
    (persons,) = con.sql("SELECT count(*) FROM person_map").fetchall()[0]
    (kept,) = con.sql("SELECT count(*) FROM __kept").fetchall()[0]
    for t in (
        "__overlap",
        "__kept",
        "__fresh",
        "__born",
        "__winner",
        "__prev_lineage",
        "__clusters",
    ):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    con.execute("DROP TABLE __unkept; DROP TABLE __biggest_old")
    return IdentityResult(persons, kept, {e: events.get(e, 0) for e in EVENTS})
