"""Accuracy of the published clusters against a ground-truth file.

Truth file (CSV): ``agency, source_record_id, person_id`` and optionally ``household_id``.
Figures are computed over the records that are both published and in the truth file; records in
the truth that were not published (for example quarantined) are counted separately.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb

from linkage.db import sql_str
from linkage.errors import QueryError


@dataclass(frozen=True)
class AgencyPair:
    """Pairwise figures over the record pairs with one record from each of two agencies (or both
    from one agency: its duplicates)."""

    agencies: str  # "a + b", names sorted
    true_pairs: int
    predicted_pairs: int
    true_positive_pairs: int

    @property
    def precision(self) -> float:
        return self.true_positive_pairs / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.true_positive_pairs / self.true_pairs if self.true_pairs else 1.0


@dataclass(frozen=True)
class Evaluation:
    records: int
    truth_records_not_published: int
    published_records_not_in_truth: int
    true_pairs: int
    predicted_pairs: int
    true_positive_pairs: int
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float
    true_persons: int
    predicted_persons: int
    over_merged_persons: int
    split_persons: int
    false_pairs_within_household: int | None
    agency_pairs: tuple[AgencyPair, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def evaluate(release: Path, truth: Path) -> Evaluation:
    """Compare the clusters of ``release`` (a published index file) with ``truth``.

    Raises:
        QueryError: when the truth file lacks a required column.
    """
    con = duckdb.connect()
    try:
        con.execute(
            f"CREATE TABLE truth AS SELECT * FROM read_csv({sql_str(truth)}, all_varchar=true, "
            "header=true)"
        )
        cols = {r[0] for r in con.sql("DESCRIBE truth").fetchall()}
        missing = {"agency", "source_record_id", "person_id"} - cols
        if missing:
            raise QueryError(
                f"{truth}: truth file lacks column(s) {sorted(missing)}; it needs agency, "
                "source_record_id, person_id (and optionally household_id)"
            )
        household = "household_id" if "household_id" in cols else "NULL"
        con.execute(f"ATTACH {sql_str(release)} AS idx (READ_ONLY)")
        con.execute(f"""
            CREATE TABLE j AS
            SELECT c.person_id AS pred, t.person_id AS true_id, {household} AS household,
                   agency
            FROM idx.crosswalk c
            JOIN truth t USING (agency, source_record_id)
        """)
        (not_published,) = con.sql(
            "SELECT count(*) FROM truth ANTI JOIN idx.crosswalk USING (agency, source_record_id)"
        ).fetchall()[0]
        (not_in_truth,) = con.sql(
            "SELECT count(*) FROM idx.crosswalk ANTI JOIN truth USING (agency, source_record_id)"
        ).fetchall()[0]
        row = con.sql("""
            WITH pc AS (SELECT pred, count(*) n FROM j GROUP BY pred),
                 tc AS (SELECT true_id, count(*) n FROM j GROUP BY true_id),
                 both_ AS (SELECT pred, true_id, count(*) n FROM j GROUP BY pred, true_id),
                 per_record AS (
                     SELECT b.n AS inter, pc.n AS pn, tc.n AS tn
                     FROM j JOIN both_ b USING (pred, true_id)
                     JOIN pc USING (pred) JOIN tc USING (true_id)
                 )
            SELECT
                (SELECT count(*) FROM j),
                (SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM tc),
                (SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM pc),
                (SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM both_),
                (SELECT avg(inter / pn) FROM per_record),
                (SELECT avg(inter / tn) FROM per_record),
                (SELECT count(*) FROM tc),
                (SELECT count(*) FROM pc),
                (SELECT count(*) FROM (SELECT pred FROM both_ GROUP BY pred HAVING count(*) > 1)),
                (SELECT count(*) FROM (
                    SELECT true_id FROM both_ GROUP BY true_id HAVING count(*) > 1))
        """).fetchall()[0]
        records, true_pairs, pred_pairs, tp, bp, br, t_persons, p_persons, over, split = row
        in_household: int | None = None
        if household != "NULL":
            (in_household,) = con.sql("""
                SELECT count(*) FROM j a JOIN j b
                  ON a.pred = b.pred AND a.true_id < b.true_id AND a.household = b.household
            """).fetchall()[0]
        agency_pairs = _agency_pairs(con)
    finally:
        con.close()
    p = tp / pred_pairs if pred_pairs else 1.0
    r = tp / true_pairs if true_pairs else 1.0
    bp, br = float(bp or 0.0), float(br or 0.0)
    return Evaluation(
        records=records,
        truth_records_not_published=not_published,
        published_records_not_in_truth=not_in_truth,
        true_pairs=int(true_pairs),
        predicted_pairs=int(pred_pairs),
        true_positive_pairs=int(tp),
        pairwise_precision=p,
        pairwise_recall=r,
        pairwise_f1=_f1(p, r),
        bcubed_precision=bp,
        bcubed_recall=br,
        bcubed_f1=_f1(bp, br),
        true_persons=t_persons,
        predicted_persons=p_persons,
        over_merged_persons=over,
        split_persons=split,
        false_pairs_within_household=in_household,
        agency_pairs=agency_pairs,
    )


def _agency_pairs(con: duckdb.DuckDBPyConnection) -> tuple[AgencyPair, ...]:
    """Pair counts per pair of agencies, from per-group record counts (pairs are never listed)."""

    def pairs(group: str) -> str:
        # Pairs within each group, split by the agencies of their two records.
        return f"""
            WITH g AS (SELECT {group}, agency, count(*) AS n FROM j GROUP BY ALL)
            SELECT a.agency || ' + ' || b.agency AS agencies,
                   sum(CASE WHEN a.agency = b.agency THEN a.n * (a.n - 1) / 2
                            ELSE a.n * b.n END) AS n
            FROM g a JOIN g b USING ({group}) WHERE a.agency <= b.agency GROUP BY 1"""

    rows = con.sql(f"""
        SELECT agencies, coalesce(t.n, 0), coalesce(p.n, 0), coalesce(tp.n, 0)
        FROM ({pairs("true_id")}) t
        FULL JOIN ({pairs("pred")}) p USING (agencies)
        FULL JOIN ({pairs("pred, true_id")}) tp USING (agencies)
        ORDER BY agencies
    """).fetchall()
    return tuple(AgencyPair(a, int(t), int(p), int(tp)) for a, t, p, tp in rows)
