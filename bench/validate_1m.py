"""Time reading and validating a ~1M-row NHS trust extract (read_extract + validate_extract).

Usage::

    .venv/bin/python bench/validate_1m.py                      # generate 1.4M persons (~1M rows)
    .venv/bin/python bench/validate_1m.py --csv /tmp/v1m/nhs_trust.csv
    .venv/bin/python bench/validate_1m.py --csv ... --faults 0.3   # 30% of rows break a rule
    .venv/bin/python bench/validate_1m.py --csv ... --profile      # where validation's time goes

``--faults F`` rewrites a copy of the file in which a share F of rows breaks a rule: most get
their date of birth as DD/MM/YYYY (format drift), some a gender outside the code set, and one in
a hundred of them shares its patient_id with the next row (conflicting duplicates). It measures
the path where GX lists many failing rows. Prints seconds, rows per second and peak RSS (the
process's maximum, from ``resource.getrusage``). Prints counts only, never values.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import logging
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from linkage.config import DEMO_CONFIG, Agency, load_config
from linkage.contracts import load_contract
from linkage.sources import read_extract
from linkage.validate import validate_extract

CONTRACT = Path(__file__).resolve().parents[1] / "data_contracts" / "nhs_trust.yaml"


def nhs_agency(path: Path) -> Agency:
    spec = next(a for a in load_config(DEMO_CONFIG).agencies if a.name == "nhs_trust")
    doc = spec.model_dump()
    doc["source"]["path"] = str(path)
    return Agency.model_validate(doc)


def generate(folder: Path, persons: int) -> Path:
    from linkage.demo.generate import generate_demo

    print(f"generating {persons} persons in {folder} ...", flush=True)
    generate_demo(folder, persons=persons, seed=1)
    return folder / "nhs_trust.csv"


def with_faults(source: Path, target: Path, share: float, seed: int = 1) -> int:
    """Copy ``source`` with a share of rows made to break a rule; returns the rows changed."""
    rng = np.random.default_rng(seed)
    changed = 0
    with (
        source.open(encoding="utf-8", newline="") as f,
        target.open("w", encoding="utf-8", newline="") as out,
    ):
        reader = csv.reader(f)
        writer = csv.writer(out, lineterminator="\n")
        header = next(reader)
        writer.writerow(header)
        dob, gender, pid = (header.index(c) for c in ("date_of_birth", "gender", "patient_id"))
        previous: list[str] | None = None
        for row in reader:
            if rng.random() < share:
                changed += 1
                pick = rng.random()
                if pick < 0.01 and previous is not None:
                    row[pid] = previous[pid]
                elif pick < 0.1:
                    row[gender] = "Not known"
                elif len(row[dob]) == 10:
                    y, m, d = row[dob].split("-")
                    row[dob] = f"{d}/{m}/{y}"
            writer.writerow(row)
            previous = row
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, help="an NHS trust extract (default: generate one)")
    parser.add_argument("--persons", type=int, default=1_400_000)
    parser.add_argument("--faults", type=float, default=0.0)
    parser.add_argument("--work", type=Path, help="output folder (default: a temporary one)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("linkage").setLevel(logging.INFO)

    with tempfile.TemporaryDirectory(prefix="validate-bench-") as tmp:
        work = args.work or Path(tmp)
        path = args.csv or generate(work / "data", args.persons)
        if args.faults:
            faulty = work / "nhs_trust_faults.csv"
            n = with_faults(path, faulty, args.faults)
            print(f"planted faults in {n} rows", flush=True)
            path = faulty
        agency, contract = nhs_agency(path), load_contract(CONTRACT)
        import great_expectations  # noqa: F401  # import time (about 2 s) is not validation

        t0 = time.perf_counter()
        extracted = read_extract(agency, contract, work / "out")
        t1 = time.perf_counter()
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        result = validate_extract(extracted, contract, work / "out")
        if profiler:
            profiler.disable()
        t2 = time.perf_counter()

    rows = extracted.delivered
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows delivered      {rows:>12,}")
    print(f"read_extract        {t1 - t0:>10.2f} s  ({rows / (t1 - t0):>10,.0f} rows/s)")
    print(f"validate_extract    {t2 - t1:>10.2f} s  ({result.checked / (t2 - t1):>10,.0f} rows/s)")
    print(f"read + validate     {t2 - t0:>10.2f} s  ({rows / (t2 - t0):>10,.0f} rows/s)")
    print(f"peak RSS            {rss:>10.0f} MB")
    print(f"expectations        {result.expectations:>12}")
    print(f"quarantined         {extracted.quarantined:>12,} reading, {result.quarantined:,} rules")
    for reason, n in sorted(result.reasons.items()):
        print(f"  {reason:<30}{n:>10,}")
    if profiler:
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(30)
        print(buffer.getvalue())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
