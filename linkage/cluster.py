"""From scored pairs to persons: trusted-number links, vetoes, safe clustering and grades.

Connected components over every pair above a threshold is what chains a family into one person:
twins share a family name, a birth date and an address, so one pair of their records can score
above any threshold, and that one pair joins the twins' whole clusters. Hence three stages:

1. **Decide each scored pair** (table ``decisions``). A pair is *vetoed* (never linked) when
   - ``identifier_conflict``: both records hold a trusted number of one scheme and they differ;
   - ``date_of_birth_conflict``: both hold a birth date, more than a year apart and more than one
     digit apart (a mistyped digit is not a conflict, in a year of four digits or of two: 1991
     and 2001), unless they share an identifier (any scheme, one typo allowed) and their given
     names do not conflict;
   - ``given_name_conflict``: both hold a given name and they share no identifier, and the
     names are not similar (Jaro-Winkler < 0.8 and more than one typo apart), not variants of one
     another (``BILL``, ``WILLIAM``; also with a typo in a name of 4 or more letters: ``JAEMS``,
     ``JIM``), neither contains the other (``LIAM``, ``WILLIAM``; ``J``, ``JOHN``), neither is
     (one typo from) the other's middle name, and neither is the other's family name (names
     recorded the other way round).
   The last two apply only below the certain threshold: they guard the band where agreement on
   family name, address and birth date (which twins share) can carry a pair, and they let the
   model's own strongest evidence stand. Otherwise a pair links when it shares a trusted number
   (a deterministic link) or scores at or above the cluster threshold.
2. **Connected components** of the linked pairs (Splink's clustering, in DuckDB).
3. **Check each component**: if any two of its records (linked or not) conflict as above, if it
   has more than ``max_cluster_size`` records, or if it has 4 or more records joined by no more
   pairs than records (a chain, where one pair may bridge two groups), it is rebuilt greedily:
   links in order of strength, refusing any merge that would put conflicting records together
   (``cluster_conflict``), exceed the size cap (``cluster_size``), or join two groups of two or
   more records through a single link that is not certain (``weak_bridge``). Two records whose
   given names conflict may still be one person when a record of the group explains both (KOFI
   SCOTT and LEWIS SCOTT, once LEWIS KOFI SCOTT is in the group): see :func:`rebuild`.

Every scored pair then gets a grade: ``certain`` (linked, on a trusted number or at or above the
certain threshold), ``probable`` (linked otherwise) or ``possible`` (not linked: below the cluster
threshold, vetoed or refused; the pairs a clerical review would look at).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
from splink import DuckDBAPI
from splink.clustering import cluster_pairwise_predictions_at_threshold

log = logging.getLogger(__name__)

#: Grades of a scored pair, strongest first.
GRADES = ("certain", "probable", "possible")
#: The vetoes decided per cluster (stage 3), not per pair.
CLUSTER_VETOES = ("cluster_conflict", "cluster_size", "weak_bridge")
#: Reasons a pair is not linked although it scored at or above the cluster threshold.
VETOES = ("identifier_conflict", "date_of_birth_conflict", "given_name_conflict", *CLUSTER_VETOES)
#: Components above this size are checked for conflicts only on the pairs scored.
_ALL_PAIRS_LIMIT = 1000


@dataclass(frozen=True)
class ClusterPolicy:
    trusted: tuple[str, ...]
    """Identifier columns (``id_<scheme>``) whose agreement links and whose difference vetoes."""
    identifiers: tuple[str, ...]
    """Every identifier column compared: agreement on any (or one typo away) outweighs one
    conflicting field."""
    cluster_threshold: float
    certain_threshold: float
    max_cluster_size: int
    household_guards: bool = True
    """The given-name and birth-date vetoes (off only for sources that hold no families)."""


#: Table of an incremental run's work database: ``cluster_id`` of each cluster that is a previous
#: person carried over whole (its cluster ID is its person ID).
CARRIED = "carried_persons"


@dataclass(frozen=True)
class PreviousClusters:
    """Tables (temporary, from :func:`linkage.incremental.predict_incremental`) that let
    :func:`cluster` re-cluster only the affected records; it drops them when done."""

    seeds: str
    """``record_key`` of each record known to be affected."""
    persons: str
    """``record_key, person_id``: each unchanged record's person in the previous release."""
    refusals: str
    """``record_key_l, record_key_r, veto``: pairs of unchanged records that a cluster rebuild
    refused in the previous release."""


@dataclass(frozen=True)
class ClusterResult:
    persons: int
    largest_person: int
    links: int
    grades: dict[str, int]
    deterministic_links: int
    vetoes: dict[str, int] = field(default_factory=dict)
    rebuilt_clusters: int = 0


def conflict_sql(
    a: str, b: str, policy: ClusterPolicy, probability: str, names_differ: str | None = None
) -> dict[str, str]:
    """SQL booleans (never NULL) comparing records ``a`` and ``b`` (table aliases): ``shared_id``
    and, for each veto reason of stage 1, whether it applies to the pair. ``probability`` is the
    SQL for the pair's match probability (NULL when the pair was not scored). ``names_differ``
    is a column holding ``given_names_differ`` already computed (the costliest check, which two
    of the others include)."""

    def any_equal(cols: Iterable[str]) -> str:
        return f"coalesce({' OR '.join(f'{a}.{c} = {b}.{c}' for c in cols) or 'false'}, false)"

    trusted = policy.trusted
    shared = any_equal(trusted)
    # The person's own number, allowing one typo (a trusted number with a check digit cannot
    # be one typo away from another valid one).
    personal = " OR ".join(
        f"damerau_levenshtein({a}.{c}, {b}.{c}) <= 1"
        for c in dict.fromkeys((*trusted, *policy.identifiers))
    )
    personal = f"coalesce({personal or 'false'}, false)"
    differ = " OR ".join(f"{a}.{c} <> {b}.{c}" for c in trusted) or "false"
    ad, bd = f"{a}.date_of_birth", f"{b}.date_of_birth"
    # A mistyped digit is not a conflict, in a year of four digits or of two (01 for 91 reads
    # as 2001 for 1991).
    dob = (
        f"coalesce(abs(date_diff('day', {ad}, {bd})) > 366 "
        f"AND levenshtein(strftime({ad}, '%Y%m%d'), strftime({bd}, '%Y%m%d')) > 1 "
        f"AND levenshtein(strftime({ad}, '%y%m%d'), strftime({bd}, '%y%m%d')) > 1, false)"
    )
    ag, bg = f"{a}.given_name", f"{b}.given_name"

    def one_typo(x: str, y: str) -> str:  # names of 4 letters or more, one edit apart
        return f"(length({x}) >= 4 AND length({y}) >= 4 AND damerau_levenshtein({x}, {y}) <= 1)"

    def middle(x: str, g: str) -> str:  # g is (one typo from) one of x's middle names
        return (
            f"len(list_filter(coalesce(string_split({x}.middle_names, ' '), []), "
            f"lambda m: m = {g} OR {one_typo('m', g)})) > 0"
        )

    def within(short: str, long: str) -> str:  # WILLIAM / LIAM, J / JOHN
        return (
            f"(length({short}) < 3 AND starts_with({long}, {short}) "
            f"OR length({short}) >= 3 AND contains({long}, {short}))"
        )

    # Short forms, allowing a typo in either (JAEMS / JIM, via JAMES).
    va, vb = f"{a}.given_name_variants", f"{b}.given_name_variants"
    variants = (
        f"(list_has_any({va}, {vb}) OR len(list_filter({va}, lambda x: "
        f"len(list_filter({vb}, lambda y: {one_typo('x', 'y')})) > 0)) > 0)"
    )
    # The variant and middle-name checks (lists and lambdas) only where the plain ones have not
    # settled it: DuckDB evaluates every operand of an AND, but a CASE's THEN only where its
    # WHEN holds. Most pairs hold similar names, and were paying for the lists.
    names_differ = names_differ or (
        f"coalesce(CASE WHEN {ag} IS NOT NULL AND {bg} IS NOT NULL "
        f"AND jaro_winkler_similarity({ag}, {bg}) < 0.8 "
        f"AND damerau_levenshtein({ag}, {bg}) > 1 "
        f"AND NOT {within(ag, bg)} AND NOT {within(bg, ag)} "
        f"AND NOT coalesce(jaro_winkler_similarity({ag}, {b}.family_name) >= 0.92, false) "
        f"AND NOT coalesce(jaro_winkler_similarity({a}.family_name, {bg}) >= 0.92, false) "
        f"THEN NOT {variants} AND NOT {middle(a, bg)} AND NOT {middle(b, ag)} END, false)"
    )
    uncertain = (
        f"coalesce({probability} < {policy.certain_threshold}, true)"
        if policy.household_guards
        else "false"
    )
    return {
        "shared_id": shared,
        "identifier_conflict": f"coalesce({differ}, false)",
        # A number of the person's own outweighs one disagreement, not two.
        "date_of_birth_conflict": (
            f"({uncertain} AND {dob} AND (NOT {personal} OR {names_differ}))"
        ),
        "given_name_conflict": f"({uncertain} AND {names_differ} AND NOT {personal})",
        # The names alone, whatever else the records share: used to judge a whole group.
        "given_names_differ": names_differ,
    }


def _columns_read(checks: dict[str, str]) -> list[str]:
    """The record columns that the checks of :func:`conflict_sql` read (as ``a.x``, ``b.x``)."""
    return sorted(set(re.findall(r"\b[ab]\.(\w+)", " ".join(checks.values()))))


def _with_records(
    con: duckdb.DuckDBPyConnection, source: str, out: str, read: list[str], columns: str
) -> None:
    """Temp table ``out``: ``columns`` of the pairs in ``source`` (``p``, with ``record_key_l``
    and ``record_key_r``) and the columns ``read`` of their left and right records as structs
    ``a`` and ``b`` (so that checks' ``a.x`` and ``b.x`` read them). One join per statement:
    each hash table then spills under the memory limit, where several at once do not."""
    for side, key, src, cols in (
        ("a", "record_key_l", source, columns),
        ("b", "record_key_r", "__side_a", "p.*"),
    ):
        fields = ", ".join(f"{x} := {side}.{x}" for x in read)
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {out if side == "b" else "__side_a"} AS
            SELECT {cols}, struct_pack({fields}) AS {side}
            FROM {src} p JOIN records {side} ON {side}.record_key = p.{key}
        """)
    con.execute("DROP TABLE __side_a")


def cluster(
    con: duckdb.DuckDBPyConnection, policy: ClusterPolicy, previous: PreviousClusters | None = None
) -> ClusterResult:
    """Decide, cluster and grade the pairs of table ``pairs`` over table ``records``.

    Adds ``linked``, ``grade`` and ``veto`` to ``pairs``; writes ``clusters(record_key,
    cluster_id)`` with every record (a record in no link is its own cluster).

    With ``previous`` (an incremental run), only the affected records are clustered: the seeds
    and everything joined to them by a pair linked in stage 1 (so whole components). Every other
    component holds the same records and pairs as in the previous release, so it keeps its
    previous persons (as cluster ids) and the refusals its rebuild made: the result is the one
    clustering everything gives.
    """
    c = conflict_sql("a", "b", policy, "p.match_probability")
    _with_records(
        con, "pairs", "__sides", _columns_read(c),
        "p.record_key_l, p.record_key_r, p.match_weight, p.match_probability",
    )  # fmt: skip
    con.execute(f"""
        CREATE OR REPLACE TABLE decisions AS
        SELECT p.record_key_l, p.record_key_r, p.match_weight, p.match_probability,
               {c["shared_id"]} AS shared_id,
               CASE WHEN {c["identifier_conflict"]} THEN 'identifier_conflict'
                    WHEN {c["date_of_birth_conflict"]} THEN 'date_of_birth_conflict'
                    WHEN {c["given_name_conflict"]} THEN 'given_name_conflict' END AS veto
        FROM __sides p
    """)
    con.execute("DROP TABLE __sides")
    con.execute(
        "ALTER TABLE decisions ADD COLUMN linked BOOLEAN; "
        "UPDATE decisions SET linked = veto IS NULL AND (shared_id OR match_probability >= ?), "
        "veto = CASE WHEN match_probability >= ? OR shared_id THEN veto END",
        [policy.cluster_threshold, policy.cluster_threshold],
    )
    nodes = "records" if previous is None else _affected_records(con, previous)
    con.execute(
        "CREATE OR REPLACE TEMP VIEW __linked AS "
        "SELECT record_key_l, record_key_r FROM decisions WHERE linked"
        + (f" AND record_key_l IN (SELECT record_key FROM {nodes})" if previous else "")
    )
    db_api = DuckDBAPI(connection=con)
    components = cluster_pairwise_predictions_at_threshold(
        nodes, "__linked", db_api, node_id_column_name="record_key"
    )
    con.execute(
        "CREATE OR REPLACE TABLE clusters AS "
        f"SELECT record_key, cluster_id FROM {components.physical_name}"
    )
    components.drop_table_from_database_and_remove_from_cache()
    rebuilt = _rebuild_suspect_clusters(con, policy)
    if previous is not None:
        con.execute(
            f"INSERT INTO clusters SELECT record_key, person_id FROM {previous.persons} "
            f"ANTI JOIN {nodes} USING (record_key)"
        )
        # The previous persons none of whose records was clustered again: carried over whole,
        # so they keep their IDs (linkage.identity) and their rows of the release.
        con.execute(f"""
            CREATE OR REPLACE TABLE {CARRIED} AS
            SELECT DISTINCT person_id AS cluster_id FROM {previous.persons}
            WHERE person_id NOT IN (
                SELECT person_id FROM {previous.persons} SEMI JOIN {nodes} USING (record_key))
        """)
        con.execute(f"DROP TABLE {nodes}; DROP TABLE {previous.persons}")

    # Written into the pairs in place: a join writing the whole (wide) pairs again holds its
    # hash table and a row group of wide rows at once, which a small memory limit cannot.
    con.execute(
        "ALTER TABLE pairs ADD COLUMN linked BOOLEAN; ALTER TABLE pairs ADD COLUMN grade VARCHAR; "
        "ALTER TABLE pairs ADD COLUMN veto VARCHAR"
    )
    con.execute(
        "UPDATE pairs SET linked = d.linked, veto = d.veto, grade = CASE WHEN d.linked AND "
        "(d.shared_id OR d.match_probability >= ?) THEN 'certain' WHEN d.linked THEN 'probable' "
        "ELSE 'possible' END FROM decisions d "
        "WHERE pairs.record_key_l = d.record_key_l AND pairs.record_key_r = d.record_key_r",
        [policy.certain_threshold],
    )
    grades = dict(con.sql("SELECT grade, count(*) FROM pairs GROUP BY 1").fetchall())
    vetoes = dict(
        con.sql("SELECT veto, count(*) FROM pairs WHERE veto IS NOT NULL GROUP BY 1").fetchall()
    )
    (deterministic,) = con.sql(
        "SELECT count(*) FROM decisions WHERE linked AND shared_id"
    ).fetchall()[0]
    persons, largest = con.sql(
        "SELECT count(*), max(n) FROM (SELECT count(*) AS n FROM clusters GROUP BY cluster_id)"
    ).fetchall()[0]
    con.execute("DROP TABLE decisions; DROP VIEW __linked")
    return ClusterResult(
        persons=persons,
        largest_person=largest or 0,
        links=grades.get("certain", 0) + grades.get("probable", 0),
        grades={g: grades.get(g, 0) for g in GRADES},
        deterministic_links=deterministic,
        vetoes={v: vetoes[v] for v in VETOES if v in vetoes},
        rebuilt_clusters=rebuilt,
    )


def _affected_records(con: duckdb.DuckDBPyConnection, previous: PreviousClusters) -> str:
    """Table of the records to cluster again: the seeds closed over the pairs linked in stage 1;
    the other pairs take back the refusals their clusters' rebuild made last time."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __affected AS "
        f"SELECT record_key FROM {previous.seeds} SEMI JOIN records USING (record_key)"
    )
    while True:
        (added,) = con.execute("""
            INSERT INTO __affected
            SELECT DISTINCT k FROM (
                SELECT record_key_r AS k FROM decisions
                WHERE linked AND record_key_l IN (SELECT record_key FROM __affected)
                UNION ALL SELECT record_key_l FROM decisions
                WHERE linked AND record_key_r IN (SELECT record_key FROM __affected))
            WHERE k NOT IN (SELECT record_key FROM __affected)
        """).fetchall()[0]
        if not added:
            break
    con.execute(f"""
        UPDATE decisions SET linked = false, veto = r.veto FROM {previous.refusals} r
        WHERE decisions.record_key_l = r.record_key_l AND decisions.record_key_r = r.record_key_r
          AND decisions.record_key_l NOT IN (SELECT record_key FROM __affected)
    """)
    (n,) = con.sql("SELECT count(*) FROM __affected").fetchall()[0]
    log.info("re-clustering %d affected records; the other persons are unchanged", n)
    con.execute(f"DROP TABLE {previous.seeds}; DROP TABLE {previous.refusals}")
    return "__affected"


def _rebuild_suspect_clusters(con: duckdb.DuckDBPyConnection, policy: ClusterPolicy) -> int:
    """Stage 3: find the components that need it and rebuild them greedily; return how many."""
    c = conflict_sql("a", "b", policy, "p.match_probability")
    # Every two records of one component that must not be one person (computed once: it makes
    # the component suspect, and the rebuild keeps the two apart), and every two whose given
    # names differ (which the rebuild judges against the whole group, see `rebuild`). One join
    # per statement, as in `cluster`. Not in a component of two: its one pair is linked, so it
    # passed these same checks in stage 1, and two records are within any size cap.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __in_small AS
        SELECT record_key, cluster_id FROM clusters SEMI JOIN (
            SELECT cluster_id FROM clusters GROUP BY 1
            HAVING count(*) BETWEEN 3 AND {_ALL_PAIRS_LIMIT}
        ) USING (cluster_id)
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE __within AS
        SELECT x.cluster_id, x.record_key AS record_key_l, y.record_key AS record_key_r
        FROM __in_small x JOIN __in_small y
          ON x.cluster_id = y.cluster_id AND x.record_key < y.record_key
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE __within_scored AS
        SELECT p.*, d.match_probability FROM __within p
        LEFT JOIN decisions d USING (record_key_l, record_key_r)
    """)
    con.execute("DROP TABLE __in_small; DROP TABLE __within")
    _with_records(con, "__within_scored", "__within_sides", _columns_read(c), "p.*")
    # Three checks here include `given_names_differ`, and a projection computes each for every
    # pair: computed once first (0.044 s against 0.072 s on 38,720 pairs). Not so in `cluster`,
    # whose CASE stops at the first veto that holds: there it was slower (0.10 s against 0.055 s).
    once = conflict_sql("a", "b", policy, "p.match_probability", names_differ="p.differ")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __conflicts AS
        SELECT * FROM (
            SELECT p.cluster_id, p.record_key_l AS key_a, p.record_key_r AS key_b,
                   {once["identifier_conflict"]} OR {once["date_of_birth_conflict"]} AS hard,
                   {once["given_name_conflict"]} AS names, p.differ
            FROM (SELECT *, {c["given_names_differ"]} AS differ FROM __within_sides) p
        ) WHERE hard OR names OR differ
    """)
    con.execute("DROP TABLE __within_scored; DROP TABLE __within_sides")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE __suspect AS
        WITH size AS (SELECT cluster_id, count(*) AS n FROM clusters GROUP BY 1),
        links AS (
            SELECT c.cluster_id, count(*) AS m FROM decisions d
            JOIN clusters c ON c.record_key = d.record_key_l WHERE d.linked GROUP BY 1
        )
        SELECT cluster_id FROM size LEFT JOIN links USING (cluster_id)
        WHERE n > {int(policy.max_cluster_size)} OR (n >= 4 AND coalesce(m, 0) <= n)
           OR cluster_id IN (SELECT cluster_id FROM __conflicts WHERE hard OR names)
    """)
    (n_suspect,) = con.sql("SELECT count(*) FROM __suspect").fetchall()[0]
    if not n_suspect:
        con.execute("DROP TABLE __suspect; DROP TABLE __conflicts")
        return 0
    edges = con.execute(
        """
        SELECT d.record_key_l, d.record_key_r, d.shared_id OR d.match_probability >= ?
        FROM decisions d JOIN clusters c ON c.record_key = d.record_key_l
        WHERE d.linked AND c.cluster_id IN (SELECT cluster_id FROM __suspect)
        ORDER BY 3 DESC, d.match_weight DESC, d.record_key_l, d.record_key_r
        """,
        [policy.certain_threshold],
    ).fetchall()
    conflicts = con.sql(
        "SELECT key_a, key_b, CASE WHEN hard THEN 'hard' ELSE 'names' END FROM __conflicts "
        "WHERE (hard OR names) AND cluster_id IN (SELECT cluster_id FROM __suspect)"
    ).fetchall()
    differ = con.sql(
        "SELECT key_a, key_b FROM __conflicts WHERE differ "
        "AND cluster_id IN (SELECT cluster_id FROM __suspect)"
    ).fetchall()
    keys, named = [], set()
    for k, has_name in con.sql(
        "SELECT c.record_key, r.given_name IS NOT NULL FROM clusters c JOIN records r "
        "USING (record_key) WHERE c.cluster_id IN (SELECT cluster_id FROM __suspect)"
    ).fetchall():
        keys.append(k)
        if has_name:
            named.add(k)
    assignment, refused = rebuild(
        keys, edges, conflicts, policy.max_cluster_size, Names.of(named, differ)
    )
    con.register(
        "__new",
        pa.table({"record_key": list(assignment), "cluster_id": list(assignment.values())}),
    )
    con.execute(
        "UPDATE clusters SET cluster_id = n.cluster_id FROM __new n "
        "WHERE clusters.record_key = n.record_key"
    )
    con.register(
        "__refused",
        pa.table(
            {
                "record_key_l": [a for a, _ in refused],
                "record_key_r": [b for _, b in refused],
                "veto": list(refused.values()),
            },
            schema=pa.schema([(c, pa.string()) for c in ("record_key_l", "record_key_r", "veto")]),
        ),
    )
    con.execute(
        "UPDATE decisions SET linked = false, veto = r.veto FROM __refused r "
        "WHERE decisions.record_key_l = r.record_key_l AND decisions.record_key_r = r.record_key_r"
    )
    con.unregister("__new")
    con.unregister("__refused")
    con.execute("DROP TABLE __suspect; DROP TABLE __conflicts")
    log.info("rebuilt %d suspect clusters: %d links refused", n_suspect, len(refused))
    return n_suspect


@dataclass(frozen=True)
class Names:
    """Which records hold a given name, and which pairs of them have given names that cannot be
    one person's (``given_names_differ``, whatever else the two share), in both orders."""

    named: frozenset[str] = frozenset()
    differ: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def of(cls, named: Iterable[str], differ: Iterable[tuple[str, str]]) -> Names:
        return cls(frozenset(named), frozenset(p for a, b in differ for p in ((a, b), (b, a))))

    def fits(self, k: str, group: Iterable[str]) -> bool:
        """Record ``k``'s given name is one that some named record of ``group`` holds (or
        could: a short form, a typo, its middle name)."""
        return any(z in self.named and z != k and (k, z) not in self.differ for z in group)


def rebuild(
    keys: Iterable[str],
    edges: Iterable[tuple[str, str, bool]],
    conflicts: Iterable[tuple[str, str, str]],
    max_size: int,
    names: Names | None = None,
) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """Greedy constrained clustering (stage 3).

    ``edges`` are (key, key, certain) in order of strength, strongest first. ``conflicts`` are
    (key, key, kind): a ``hard`` conflict (identifiers, birth dates) never ends up in one group;
    a ``names`` conflict (given names) is judged against the two groups being merged: it stands
    unless one of the two records' given name fits a record of the other's group. (LEWIS and
    KOFI SCOTT conflict, but not once a record of LEWIS KOFI SCOTT is in the group; twins OLIVER
    and HARRY have no record that fits both.) Returns each key's cluster id (its group's smallest
    key) and the refused edges that ended up between two groups, with the reason.

    Example: twins A and B, each with two records, joined by one probable pair.
        >>> edges = [("a1", "a2", True), ("b1", "b2", True), ("a2", "b1", False)]
        >>> rebuild(["a1", "a2", "b1", "b2"], edges, [], max_size=10)
        ({'a1': 'a1', 'a2': 'a1', 'b1': 'b1', 'b2': 'b1'}, {('a2', 'b1'): 'weak_bridge'})
    """
    names = names or Names()
    parent: dict[str, str] = {k: k for k in keys}
    members: dict[str, list[str]] = {k: [k] for k in parent}
    neighbours: dict[str, list[str]] = defaultdict(list)
    cannot: dict[str, list[tuple[str, str]]] = defaultdict(list)
    edges = list(edges)
    for a, b, _ in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    for a, b, kind in conflicts:
        cannot[a].append((b, kind))
        cannot[b].append((a, kind))

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def conflict(small: str, big: str) -> bool:
        for k in members[small]:
            for o, kind in cannot[k]:
                if find(o) != big:
                    continue
                if kind == "hard" or not (
                    names.fits(k, members[big]) or names.fits(o, members[small])
                ):
                    return True
        return False

    refused: dict[tuple[str, str], str] = {}
    for a, b, certain in edges:
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        small, big = sorted((ra, rb), key=lambda r: len(members[r]))
        if len(members[small]) + len(members[big]) > max_size:
            refused[(a, b)] = "cluster_size"
        elif conflict(small, big):
            refused[(a, b)] = "cluster_conflict"
        elif (
            not certain
            and len(members[small]) >= 2
            and sum(find(o) == big for k in members[small] for o in neighbours[k]) < 2
        ):
            refused[(a, b)] = "weak_bridge"
        else:
            parent[small] = big
            members[big].extend(members.pop(small))
    roots = {r: min(m) for r, m in members.items()}
    assignment = {k: roots[find(k)] for k in parent}
    still_apart = {e: v for e, v in refused.items() if assignment[e[0]] != assignment[e[1]]}
    return assignment, still_apart
