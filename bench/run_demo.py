"""Time the nightly pipeline's steps on the demo agencies, beside bare Splink on the same data.

Usage: ``.venv/bin/python bench/run_demo.py [--persons N] [--seed S] [--out DIR]``

Generates the demo extracts for N persons, then runs the library steps in order (no Prefect, so
the figures are the work itself): extract, validate, standardise, train (first run only), link
(blocking check, predict, cluster), publish. Then, on the same standardised records and with the
same saved model, bare Splink: predict and connected components only. Prints wall time per step,
comparisons per second and the process's peak RSS, and the machine load (the development
machine's 2 cores are shared).
"""

from __future__ import annotations

import argparse
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
from linkage.config import load_config
from linkage.demo.project import write_demo_project
from linkage.link import load_records
from linkage.model import ModelArtefact, register_tf_tables


def bare_splink(config_path: Path, model: ModelArtefact, standardised: list[Path]) -> float:
    """Predict and cluster with Splink alone (same model and thresholds); return seconds."""
    config = load_config(config_path)
    con = duckdb.connect()
    con.execute(f"SET threads = {config.duckdb.threads}")
    con.execute(f"SET memory_limit = '{config.duckdb.memory_limit}'")
    load_records(con, standardised)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp dir)")
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="linkage-bench-"))
    print(f"persons={args.persons} seed={args.seed} root={root} load={os.getloadavg()}")

    t0 = time.monotonic()
    config_path = write_demo_project(root, persons=args.persons, seed=args.seed)
    config = load_config(config_path)
    times: dict[str, float] = {"generate demo data": time.monotonic() - t0}

    def step(name: str, fn: Callable[..., Any], *a: Any) -> Any:
        start = time.monotonic()
        out = fn(*a)
        times[name] = times.get(name, 0.0) + time.monotonic() - start
        return out

    run = pipeline.new_run(config)
    intakes = []
    for agency in config.agencies:
        extracted = step("extract", pipeline.extract, config, agency.name, run)
        validated = step("validate", pipeline.validate, config, extracted, run)
        intakes.append(step("standardise", pipeline.standardise, config, extracted, validated, run))
    gates = pipeline.check(config, intakes)
    paths = [i.standardised for i in intakes if i.standardised is not None]
    model, trained = step("train (first run)", pipeline.model_for_run, config, paths, run)
    linked = step("link", pipeline.link, config, model, paths, run)
    record = pipeline.record(
        config, run, intakes, gates, status="published", model=model, trained=trained
    )
    published = step("publish", pipeline.publish_run, config, record, linked)
    step("report", pipeline.report, config, published, intakes)
    bare = bare_splink(config_path, model, paths)

    con = duckdb.connect()
    load_records(con, paths)
    candidates = sum(
        r.pairs for r in check_blocking_budget(con, "records", model.settings_path, 1e18)
    )
    con.close()
    records = sum(i.summary.accepted for i in intakes)
    print(f"{'step':<24}{'seconds':>9}")
    for name, secs in times.items():
        print(f"{name:<24}{secs:>9.1f}")
    pipeline_secs = sum(v for k, v in times.items() if k not in ("generate demo data",))
    print(f"{'pipeline total':<24}{pipeline_secs:>9.1f}")
    print(
        f"{'bare Splink (predict+cluster)':<24}{bare:>9.1f}  (our link step: {times['link']:.1f})"
    )
    print(
        f"records={records} candidate pairs (sum over rules)={candidates:,} scored={linked.pairs} "
        f"links={linked.links} persons={published.persons} largest={linked.largest_person} "
        f"comparisons/s in link={candidates / times['link']:,.0f}"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:,.0f} MB; load after: {os.getloadavg()}")
    if args.out is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
