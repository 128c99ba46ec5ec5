"""Run the demo pipeline under a small DuckDB memory limit and report whether it completes.

Usage: ``.venv/bin/python bench/low_memory.py [--persons N] [--memory-limit 100MB] [--threads T]
[--train-at 4GB] [--out DIR]``

Generates the demo extracts for N persons, sets ``duckdb.memory_limit`` (and ``threads``) in the
project file, and runs the library steps once (training included: the first run); with
``--train-at``, a first run under that limit trains the model and the measured run is a nightly
run with the saved model. Prints the size of the
extracts beside the limit, seconds per step, the most the spill folder held (sampled every
second) and the process's peak RSS, or the step that ran out of memory.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

from run_demo import timed_run  # bench/ is on the path when a bench script runs

from linkage.config import load_config
from linkage.demo.project import write_demo_project


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--memory-limit", default="100MB")
    ap.add_argument("--threads", type=int, default=None, help="duckdb.threads (default: as is)")
    ap.add_argument("--train-at", default=None, help="train first under this memory limit")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp dir)")
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="linkage-lowmem-"))
    path = write_demo_project(root, persons=args.persons, seed=args.seed)

    def limit(memory: str) -> None:
        text = re.sub(r"memory_limit: .*", f"memory_limit: {memory}", path.read_text())
        if args.threads:
            text = re.sub(r"threads: .*", f"threads: {args.threads}", text)
        path.write_text(text)

    if args.train_at:
        limit(args.train_at)
        timed_run(load_config(path), full=True)
    limit(args.memory_limit)
    config = load_config(path)
    saved = config.model.dir.exists() and any(config.model.dir.iterdir())
    extracts = _folder_bytes(root / "data") - (root / "data" / "truth.csv").stat().st_size
    print(
        f"persons={args.persons} extracts={extracts / 1e6:.1f} MB "
        f"duckdb.memory_limit={config.duckdb.memory_limit} threads={config.duckdb.threads} "
        f"model={'saved' if saved else 'trained in this run'} load={os.getloadavg()}",
        flush=True,
    )
    spill, done = [0], threading.Event()

    def watch() -> None:
        while not done.wait(1.0):
            spill[0] = max(spill[0], _folder_bytes(config.duckdb.temp_directory))

    threading.Thread(target=watch, daemon=True).start()
    started = time.monotonic()
    try:
        times, record, *_ = timed_run(config, full=True)
        outcome = f"completed: {record.records:,} records, {record.persons:,} persons"
    except Exception as e:  # noqa: BLE001 - the figure to report is which step failed, and why
        times, outcome = {}, f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    done.set()
    print(outcome)
    for step, seconds in times.items():
        print(f"  {step:<24}{seconds:>8.1f} s")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"total {time.monotonic() - started:.1f} s; spill folder peak {spill[0] / 1e6:,.0f} MB; "
        f"peak RSS {peak_mb:,.0f} MB; load after: {os.getloadavg()}"
    )
    if args.out is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
