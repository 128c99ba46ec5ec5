"""Time the nightly pipeline's steps on the demo agencies and print wall time and peak memory.

Usage: ``.venv/bin/python bench/run_demo.py [--persons N] [--seed S] [--out DIR]``

Generates the demo extracts for N persons, then runs the library steps in order (no Prefect, so the
figures are the work itself): extract, standardise, train (first run only), predict and cluster,
publish. Prints one line per step and the process's peak RSS. Machine load is printed too, because
the development machine's 2 cores are shared.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from linkage import pipeline
from linkage.config import load_config
from linkage.demo.project import write_demo_project


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp dir)")
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="linkage-bench-"))
    print(f"persons={args.persons} seed={args.seed} root={root} load={os.getloadavg()}")

    t0 = time.monotonic()
    config = load_config(write_demo_project(root, persons=args.persons, seed=args.seed))
    times: dict[str, float] = {"generate demo data": time.monotonic() - t0}

    def step(name: str, fn, *a):  # noqa: ANN001, ANN202
        start = time.monotonic()
        out = fn(*a)
        times[name] = times.get(name, 0.0) + time.monotonic() - start
        return out

    run = pipeline.new_run(config)
    extracts, standardised = [], []
    for agency in config.agencies:
        e = step("extract", pipeline.extract, config, agency.name, run)
        extracts.append(e)
        standardised.append(step("standardise", pipeline.standardise, config, agency.name, e, run))
    model, trained = step("train (first run)", pipeline.model_for_run, config, standardised, run)
    linked = step("predict and cluster", pipeline.link, config, model, standardised, run)
    published = step(
        "publish", pipeline.publish_run, config, run, model, trained, extracts, standardised, linked
    )
    records = sum(e.accepted for e in extracts)
    print(f"{'step':<24}{'seconds':>9}")
    for name, secs in times.items():
        print(f"{name:<24}{secs:>9.1f}")
    pipeline_secs = sum(v for k, v in times.items() if k != "generate demo data")
    print(f"{'pipeline total':<24}{pipeline_secs:>9.1f}")
    print(
        f"records={records} pairs={linked.pairs} links={linked.links} persons={published.persons} "
        f"largest={linked.largest_person} records/s={records / pipeline_secs:,.0f}"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:,.0f} MB; load after: {os.getloadavg()}")
    if args.out is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
