"""Time the nightly pipeline's steps on the demo agencies, beside bare Splink on the same data.

Usage: ``.venv/bin/python bench/run_demo.py [--persons N] [--seed S] [--out DIR]``

Generates the demo extracts for N persons, then three runs of the library steps (no Prefect, so
the figures are the work itself: extract, validate, standardise, link, publish, reports): the
first run (it trains the model), a full run with the saved model, and an incremental run after 1%
of the records changed. Then, on the same standardised records and with the same saved model,
bare Splink: predict and connected components only. Prints wall time per step, comparisons per
second, the process's peak RSS and the machine load (the 2 cores are shared).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
from splink import DuckDBAPI, Linker

from linkage import pipeline
from linkage.blocking import check_blocking_budget
from linkage.config import ProjectConfig, load_config
from linkage.db import out_of_memory
from linkage.demo.project import write_demo_project
from linkage.link import load_records
from linkage.model import ModelArtefact, register_tf_tables


def bare_splink(config_path: Path, model: ModelArtefact, standardised: list[Path]) -> float:
    """Predict and cluster with Splink alone (same model and thresholds); return seconds."""
    config = load_config(config_path)
    con = duckdb.connect()
    con.execute(f"SET threads = {config.duckdb.threads}")
    con.execute(f"SET memory_limit = '{config.duckdb.memory_limit}'")
    load_records(con, standardised, common_names=model.common_names)
    started = time.monotonic()
    db_api = DuckDBAPI(connection=con)
    linker = Linker(
        db_api.register("records", dataset_display_name="records"),
        str(model.settings_path),
        log_level=logging.WARNING,
    )
    register_tf_tables(con, db_api, linker, model)  # the same term frequencies as our run
    pairs = linker.inference.predict(threshold_match_probability=config.model.predict_threshold)
    linker.clustering.cluster_pairwise_predictions_at_threshold(
        pairs, threshold_match_probability=config.model.cluster_threshold
    )
    seconds = time.monotonic() - started
    con.close()
    return seconds


def timed_run(config: ProjectConfig, *, full: bool) -> tuple[dict[str, float], Any, Any, list]:
    """One nightly run through the library steps; returns (seconds per step, record, link
    result, standardised paths)."""
    times: dict[str, float] = {}

    def step(name: str, fn: Callable[..., Any], *a: Any) -> Any:
        start = time.monotonic()
        out = fn(*a)
        times[name] = times.get(name, 0.0) + time.monotonic() - start
        return out

    run = pipeline.new_run(config, full)
    intakes = []
    for agency in config.agencies:
        extracted = step("extract", pipeline.extract, config, agency.name, run)
        validated = step("validate", pipeline.validate, config, extracted, run)
        intakes.append(step("standardise", pipeline.standardise, config, extracted, validated, run))
    gates = pipeline.check(config, intakes)
    paths = [i.standardised for i in intakes if i.standardised is not None]
    model, trained = step("train (first run only)", pipeline.model_for_run, config, paths, run)
    linked = step("link", pipeline.link, config, model, paths, run)
    record = pipeline.record(
        config, run, intakes, gates, status="published", model=model, trained=trained,
        linked=linked,
    )  # fmt: skip
    published = step("publish", pipeline.publish_run, config, record, linked)
    step("report", pipeline.report, config, published, intakes)
    return times, published, linked, paths


def change_one_percent(data: Path, records: int) -> None:
    """Edit the surname of 1% of all records (in the NHS trust's extract)."""
    path = data / "nhs_trust.csv"
    with path.open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    col = header.index("surname")
    step = max(1, len(rows) // max(1, records // 100))
    for r in rows[::step]:
        r[col] = r[col] + "X"
    with path.open("w", newline="", encoding="utf-8") as f:  # line feeds, as delivered
        csv.writer(f, lineterminator="\n").writerows([header, *rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp dir)")
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="linkage-bench-"))
    print(f"persons={args.persons} seed={args.seed} root={root} load={os.getloadavg()}", flush=True)

    t0 = time.monotonic()
    config_path = write_demo_project(root, persons=args.persons, seed=args.seed)
    config = load_config(config_path)
    print(f"generate demo data: {time.monotonic() - t0:.1f}s", flush=True)

    runs = {}
    runs["first run (trains)"] = timed_run(config, full=True)
    runs["full run, saved model"] = timed_run(config, full=True)
    records = runs["full run, saved model"][1].records
    change_one_percent(root / "data", records)
    runs["incremental, 1% changed"] = timed_run(config, full=False)

    model = pipeline.load_model(config)
    paths = runs["full run, saved model"][3]
    try:
        bare: float | None = bare_splink(config_path, model, paths)
    except Exception as e:  # its one-statement blocking may not fit in the memory limit
        if not out_of_memory(e):
            raise
        bare = None
    con = duckdb.connect()
    load_records(con, paths, common_names=model.common_names)
    rules = check_blocking_budget(con, "records", model.settings_path, 1e18)
    candidates = sum(r.pairs for r in rules)
    con.close()

    steps = list(dict.fromkeys(k for t, *_ in runs.values() for k in t))
    print(f"\nrecords={records:,} candidate pairs (sum over rules)={candidates:,}")
    print(f"{'step':<24}" + "".join(f"{name:>26}" for name in runs))
    for k in steps:
        print(f"{k:<24}" + "".join(f"{t.get(k, 0.0):>26.1f}" for t, *_ in runs.values()))
    totals = {name: sum(t.values()) for name, (t, *_) in runs.items()}
    print(f"{'total':<24}" + "".join(f"{v:>26.1f}" for v in totals.values()))
    full_link = runs["full run, saved model"][0]["link"]
    print(
        f"bare Splink predict + cluster (same model, same data): {bare:.1f}s; our link step "
        f"{full_link:.1f}s ({full_link / bare:.2f}x)"
        if bare is not None
        else "bare Splink predict + cluster ran out of memory under the same DuckDB limit"
    )
    print(f"comparisons/s in the full link step: {candidates / full_link:,.0f}")
    inc = runs["incremental, 1% changed"]
    speedup = totals["full run, saved model"] / totals["incremental, 1% changed"]
    reused = sum(e.reused for e in inc[1].extracts)
    print(
        f"incremental: {inc[2].changes}; {reused:,} records reused without validating and "
        f"standardising them again; {speedup:.1f}x faster than the full run"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:,.0f} MB; load after: {os.getloadavg()}")
    if args.out is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
