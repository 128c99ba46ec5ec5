"""Why pairs were missed or merged: counts of a published run's errors against ground truth.

Usage: ``.venv/bin/python bench/diagnose.py PROJECT_DIR`` on a project kept by
``bench/accuracy.py --keep DIR`` (``PROJECT_DIR`` holds ``linkage.yaml`` and ``data/truth.csv``).

Every true pair (two records of one person) is scored with the run's model, whether or not a
blocking rule made it a candidate, and each pair the published clusters got wrong is put in one
bucket: not a candidate of any blocking rule, scored below the prediction or cluster threshold,
vetoed (by reason), or refused when its cluster was rebuilt. Then the commonest comparison
patterns of the missed pairs and of the false links. Only counts and comparison levels are
printed, never a record. Use it on development data only (``default`` seeds 11 and 12, the
``dev`` profile): looking at the errors of data you report is tuning on it.

``--ceiling`` prints only the model's recall ceiling: the pairwise recall if every true pair
scoring at least t were linked, whatever blocking and vetoes did, for a few t. It shows how much
of a run's recall loss is the evidence the records hold (as the model weighs it) and how much the
pipeline's. It prints no error and changes nothing, so it may explain figures already reported.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import duckdb
from splink import DuckDBAPI, Linker

from linkage.config import load_config
from linkage.db import sql_str
from linkage.evaluate import evaluate
from linkage.link import load_records
from linkage.model import level_weights, levels_by_gamma, load_model, register_tf_tables
from linkage.publish import current_release


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument(
        "--agencies", default=None, help="missed pairs of these two agencies only, as a+b (sorted)"
    )
    ap.add_argument("--ceiling", action="store_true", help="print the recall ceiling only")
    args = ap.parse_args()
    config = load_config(args.project / "linkage.yaml")
    release = current_release(config.paths.index_dir)
    model = load_model(config)
    settings = json.loads(model.settings_path.read_text())
    con = duckdb.connect()
    con.execute(f"ATTACH {sql_str(release)} AS idx (READ_ONLY)")
    con.execute(
        "CREATE TABLE truth AS SELECT * FROM read_csv("
        f"{sql_str(args.project / 'data' / 'truth.csv')}, all_varchar=true)"
    )
    # The published records with their true person, as the model's input.
    con.execute("CREATE TABLE published AS SELECT * EXCLUDE (person_id) FROM idx.records")
    load_records_from_table(con, model.common_names)
    con.execute("""
        CREATE TABLE truthful AS SELECT r.*, t.person_id AS _true_id
        FROM records r JOIN truth t USING (agency, source_record_id)
    """)
    rules = [r["blocking_rule"] for r in settings["blocking_rules_to_generate_predictions"]]
    scoring = dict(settings)
    scoring["blocking_rules_to_generate_predictions"] = ["l._true_id = r._true_id"]
    db_api = DuckDBAPI(connection=con)
    linker = Linker(db_api.register("truthful", dataset_display_name="truthful"), scoring)
    register_tf_tables(con, db_api, linker, model)
    true_pairs = linker.inference.predict().physical_name
    blocked = " OR ".join(f"({r})" for r in rules)
    con.execute(f"""
        CREATE TABLE tp AS
        SELECT p.*, coalesce({blocked}, false) AS candidate,
               cl.person_id AS pred_l, cr.person_id AS pred_r
        FROM {true_pairs} p
        JOIN truthful l ON l.record_key = p.record_key_l
        JOIN truthful r ON r.record_key = p.record_key_r
        JOIN idx.records cl ON cl.record_key = p.record_key_l
        JOIN idx.records cr ON cr.record_key = p.record_key_r
    """)
    if args.ceiling:
        _recall_ceiling(con, evaluate(release, args.project / "data" / "truth.csv").pairwise_recall)
        return
    if args.agencies:
        con.execute(
            "DELETE FROM tp WHERE least(agency_l, agency_r) || '+' || greatest(agency_l, agency_r)"
            f" <> {sql_str(args.agencies)}"
        )
    cols = [c for (c,) in con.sql("SELECT column_name FROM (DESCRIBE tp)").fetchall()]
    gammas = [c for c in cols if c.startswith("gamma_")]
    labels = _level_labels(settings)
    (n_true,) = con.sql("SELECT count(*) FROM tp").fetchall()[0]
    print(f"true pairs {n_true:,}")
    _m_against_truth(con, settings, labels)
    print("\nmissed true pairs (records of one person in two published persons), by cause:")
    rows = con.sql("""
        SELECT CASE WHEN NOT t.candidate THEN 'not a candidate (no blocking rule)'
                    WHEN l.record_key_l IS NULL THEN 'scored below predict_threshold'
                    WHEN l.veto IS NOT NULL THEN 'veto: ' || l.veto
                    WHEN NOT l.linked THEN 'below cluster_threshold'
                    ELSE 'linked, yet apart (?)' END AS cause,
               count(*), round(avg(t.match_probability), 3)
        FROM tp t LEFT JOIN idx.links l USING (record_key_l, record_key_r)
        WHERE t.pred_l <> t.pred_r GROUP BY 1 ORDER BY 2 DESC
    """).fetchall()
    for cause, n, p in rows:
        print(f"  {n:>7,}  {cause:<40} mean p {p}")
    print("\nmissed pairs that no blocking rule made candidates, by the probability they score:")
    for band, n in con.sql("""
        SELECT CASE WHEN match_probability >= 0.9 THEN '>= 0.9' WHEN match_probability >= 0.5
               THEN '0.5 - 0.9' ELSE '< 0.5' END, count(*)
        FROM tp WHERE pred_l <> pred_r AND NOT candidate GROUP BY 1 ORDER BY 1
    """).fetchall():
        print(f"  {n:>7,}  {band}")
    print(f"\nmissed pairs by comparison pattern (top {args.top}):")
    _patterns(con, "SELECT * FROM tp WHERE pred_l <> pred_r", gammas, labels, args.top)

    # False links: pairs of one published person, different true persons, that were linked.
    print("\nfalse links (linked pairs of two true persons):")
    con.execute("""
        CREATE TABLE fl AS SELECT l.* FROM idx.links l
        JOIN truthful a ON a.record_key = l.record_key_l
        JOIN truthful b ON b.record_key = l.record_key_r
        WHERE l.linked AND a._true_id <> b._true_id
    """)
    for grade, n in con.sql("SELECT grade, count(*) FROM fl GROUP BY 1 ORDER BY 1").fetchall():
        print(f"  {n:>7,}  {grade}")
    _patterns(con, "SELECT * FROM fl", gammas, labels, args.top)


CEILING_THRESHOLDS = (0.99, 0.9, 0.7, 0.5, 0.3, 0.1)


def _recall_ceiling(con: duckdb.DuckDBPyConnection, published_recall: float) -> None:
    """The published pairwise recall, then that of the true pairs scoring at least each
    threshold joined transitively (within each true person), as if nothing else kept them apart."""
    persons: dict[str, list[str]] = defaultdict(list)
    for key, true_id in con.sql("SELECT record_key, _true_id FROM truthful").fetchall():
        persons[true_id].append(key)
    total = sum(len(v) * (len(v) - 1) // 2 for v in persons.values())
    print(f"true pairs {total:,}; published recall {published_recall:.4f}")
    pairs = con.sql("SELECT record_key_l, record_key_r, match_probability FROM tp").fetchall()
    for t in CEILING_THRESHOLDS:
        found = _pairs_joined([(a, b) for a, b, p in pairs if p >= t], persons.values())
        print(f"  ceiling at p >= {t:<4}: recall {found / total:.4f}")


def _pairs_joined(edges: list[tuple[str, str]], persons) -> int:
    """How many record pairs of each person the ``edges`` join, transitively (a pair of two
    persons' records is never counted, whatever joins them)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for a, b in edges:
        if (ra := root(a)) != (rb := root(b)):
            parent[ra] = rb
    sizes: dict[tuple[int, str], int] = defaultdict(int)
    for i, keys in enumerate(persons):
        for k in keys:
            sizes[i, root(k)] += 1
    return sum(n * (n - 1) // 2 for n in sizes.values())


def load_records_from_table(con: duckdb.DuckDBPyConnection, common_names: Path | None) -> None:
    """``records`` as the link step builds it (name variants, full-name key), from table
    ``published``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "published.parquet"
        con.execute(f"COPY published TO {sql_str(path)} (FORMAT parquet)")
        load_records(con, [path], common_names=common_names)


def _m_against_truth(con, settings: dict, labels: dict) -> None:
    """Each level's m in the model beside its share of the true pairs (the m it should have)."""
    print("\nm per level: model / true pairs (non-null)")
    for c in settings["comparisons"]:
        name = c["output_column_name"]
        counts = level_weights(con, "tp", name, "1")
        total = sum(counts.values()) or 1
        for gamma, lv in levels_by_gamma(c):
            m = lv.get("m_probability")
            print(
                f"  {name:<14} {labels[name][gamma][:60]:<60} "
                f"{'-' if m is None else f'{m:.4f}':>8} {counts.get(gamma, 0) / total:>8.4f}"
            )


def _level_labels(settings: dict) -> dict[str, dict[int, str]]:
    return {
        c["output_column_name"]: {-1: "null"}
        | {
            g: lv.get("label_for_charts") or lv["sql_condition"][:40]
            for g, lv in levels_by_gamma(c)
        }
        for c in settings["comparisons"]
    }


def _patterns(con, source: str, gammas: list[str], labels: dict, top: int) -> None:
    cols = ", ".join(gammas)
    for *levels, n, p in con.sql(
        f"SELECT {cols}, count(*), round(avg(match_probability), 3) FROM ({source}) "
        f"GROUP BY ALL ORDER BY count(*) DESC LIMIT {top}"
    ).fetchall():
        parts = [
            f"{g.removeprefix('gamma_')}={labels[g.removeprefix('gamma_')].get(v, v)}"
            for g, v in zip(gammas, levels, strict=True)
            if v != -1
        ]
        print(f"  {n:>6,} p={p:<6} " + " | ".join(parts))


if __name__ == "__main__":
    main()
