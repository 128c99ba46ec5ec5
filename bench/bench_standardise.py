"""Time ``to_canonical`` on synthetic raw extracts (1M rows by default) for each demo agency.

Usage: ``.venv/bin/python bench/bench_standardise.py [rows]``. Prints seconds per agency; the
synthetic values are random draws from small lists, with a share of messy and placeholder values.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from linkage.config import load_config
from linkage.standardise import standardise_extract, to_canonical

GIVEN = [
    "John",
    "Zoë",
    "  mary-ann ",
    "Mr Ahmed",
    "JEAN-PAUL",
    "Siobhán",
    "UNKNOWN",
    "Li",
    "Olivia",
]
FAMILY = ["Smith", "O’Brien", "smith-jones", "Nguyễn", "Baby of Jones", "XXX", "Kowalski", "Patel"]
STREET = ["1 High St.", "Flat 2, 10-12 St John's Rd", "NFA", "  22  Acacia Avenue ", "NONE"]
TOWN = ["Leeds", "LONDON", "york", None]
POSTCODE = ["ls62ab", "SW1A 1AA", "m1 1ae", "LS6", "ZZ99 3VZ", "EC1A1BB", None]
SEX = ["Male", "Female", "Unknown", "M", "F", "U", "1", "2", "9", "Other", "?"]
NHS = ["943 476 5919", "9434765918", "0000000000", "9990000026", "4010232137", "", "1234567881"]
NI = ["AB 65 43 21 C", "QQ123456C", "GB123456A", "JG103759A", None]


def synthetic(columns: list[str], rows: int, rng: np.random.Generator) -> pl.DataFrame:
    start = date(1920, 1, 1)
    days = rng.integers(0, 365 * 100, rows)
    iso = [(start + timedelta(days=int(d))) for d in days[:1000]]
    pools = {
        "iso": [d.strftime("%Y-%m-%d") for d in iso] + ["1900-01-01", "2021-02-30", "junk"],
        "dmy": [d.strftime("%d/%m/%Y") for d in iso] + ["01/01/1900", "31/02/2001"],
        "ymd": [d.strftime("%Y%m%d") for d in iso] + ["19000101", "1985031"],
        "mdy": [d.strftime("%m%d%Y") for d in iso] + ["01011900", "1231990"],
    }

    def pool_for(c: str) -> list:
        if "name" in c and "first" not in c or c in {"surname", "forenames_surname"}:
            if c == "forenames_surname":
                return [f"{g} {f}" for g in GIVEN for f in FAMILY] + ["SMITH, John"]
            return FAMILY if c not in {"middle_names", "second_name"} else GIVEN + [None]
        if c in {"forename", "first_name"}:
            return GIVEN
        if c in {"date_of_birth", "dob", "birth_date"}:
            return pools["iso"]
        if "post" in c:
            return POSTCODE
        if c in {"gender", "sex", "sex_code"}:
            return SEX
        if "nhs" in c:
            return NHS
        if c == "ni_number":
            return NI
        if c in {"town"}:
            return TOWN
        if c in {"address", "street", "address_line_1", "address_line_2", "flat", "house_number"}:
            return STREET
        return [f"{i:07d}" for i in range(1000)]

    data = {}
    for c in columns:
        pool = pool_for(c)
        idx = rng.integers(0, len(pool), rows)
        data[c] = pl.Series(c, pool, dtype=pl.String).gather(idx)
    data["_line"] = pl.arange(2, rows + 2, eager=True).cast(pl.Int64)
    return pl.DataFrame(data), pools


def main(rows: int = 1_000_000) -> None:
    cfg = load_config()
    rng = np.random.default_rng(42)
    for agency in cfg.agencies:
        m = agency.mapping
        df, pools = synthetic(m.source_columns(), rows, rng)
        if m.date_of_birth is not None:
            key = {"%Y-%m-%d": "iso", "%d/%m/%Y": "dmy", "%Y%m%d": "ymd", "%m%d%Y": "mdy"}[
                m.date_of_birth.format
            ]
            pool = pools[key]
            df = df.with_columns(
                pl.Series(pool, dtype=pl.String)
                .gather(rng.integers(0, len(pool), rows))
                .alias(m.date_of_birth.column)
            )
        query = to_canonical(df.lazy(), agency, cfg.identifiers)
        t0 = time.perf_counter()
        out = query.collect()
        elapsed = time.perf_counter() - t0
        flagged = out.select(pl.col("quality_flags").list.len().gt(0).sum()).item()
        with tempfile.TemporaryDirectory() as tmp:
            raw_path = Path(tmp) / "raw.parquet"
            df.write_parquet(raw_path)
            t0 = time.perf_counter()
            result = standardise_extract(
                raw_path, agency, cfg.identifiers, Path(tmp) / "std.parquet"
            )
            file_elapsed = time.perf_counter() - t0
        assert result.rows == rows
        print(
            f"{agency.name:12s} {rows:>9,d} rows  to_canonical {elapsed:5.2f} s  "
            f"parquet->parquet {file_elapsed:5.2f} s  ({flagged:,d} records flagged)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
