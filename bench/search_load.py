"""Load test of the search service: open-loop requests at a fixed rate against `linkage serve`.

Usage::

    .venv/bin/python bench/search_load.py                       # build a 1M-record index, run
    .venv/bin/python bench/search_load.py --index /tmp/sl       # reuse the index built there
    .venv/bin/python bench/search_load.py --records 200000 --rate 50 --seconds 60
    .venv/bin/python bench/search_load.py --project /tmp/b1m/p/linkage.yaml  # a real pipeline index

The index (in ``--index``, default a new temporary folder) is built in two steps:

1. a demo project of ``--base-persons`` persons (default 20,000) goes through the real pipeline
   (extract, validate, standardise, train a model, link, cluster, publish);
2. its release is **replicated synthetically** to ``--records`` records (default 1,000,000): copy
   ``k`` of each record and person keeps its given name, gets a family name drawn from the base
   persons' family names (one per person and copy), its date of birth moved ``37 * k`` days
   earlier, its postcode's inward code changed, new valid NHS and NI numbers (PNC ids dropped)
   and ``-k`` appended to its ids. Name frequencies stay the demo generator's (a few hundred
   family names, so name-pair blocks are larger than in a real population of that size); birth
   date and postcode blocks keep their size. The result has the release's tables and
   columns (``records``, ``persons``, ``runs``, ``crosswalk``); the model is the one trained in
   step 1. With ``--project``, a project's own current release is searched instead (for example
   the 1M-person demo that ``bench/run_demo.py --out DIR`` leaves).

Then ``linkage serve`` (uvicorn, one worker) is started on 127.0.0.1 and an asyncio + httpx load
generator sends ``--rate`` requests per second for ``--seconds`` (after a ``--warmup``), each at
its scheduled time whether or not earlier ones have returned (open loop: latency is measured from
the scheduled time, so a slow server cannot hide queueing). Queries are taken from the index:
name + date of birth (+ postcode), family name + date of birth, name + postcode, an NHS or NI
number, some with a typo, case and spacing varied, half by ``GET``, half by ``POST``. Prints the
requests, errors, latency percentiles, the server's CPU time per request and the machine's load.
Prints counts and timings only, never a query's values.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
import yaml
from run_demo import timed_run  # bench/ is on the path when a bench script runs

from linkage.config import load_config
from linkage.db import sql_str
from linkage.demo.project import write_demo_project
from linkage.publish import CURRENT, current_release

# SQL pieces of the replication; ``k`` is the copy number (0 = the original).
_SUFFIX = "CASE WHEN k = 0 THEN '' ELSE '-' || k END"
_DOB = "CAST(date_of_birth - to_days(CAST(37 * k AS INTEGER)) AS DATE)"
_POSTCODE = """CASE WHEN postcode IS NULL OR k = 0 THEN postcode ELSE
    split_part(postcode, ' ', 1) || ' ' ||
    CAST((CAST(substr(split_part(postcode, ' ', 2), 1, 1) AS INTEGER) + k) % 10 AS VARCHAR) ||
    chr(CAST(65 + (ascii(substr(split_part(postcode, ' ', 2), 2, 1)) - 65 + k // 10) % 26
             AS INTEGER)) ||
    chr(CAST(65 + (ascii(substr(split_part(postcode, ' ', 2), 3, 1)) - 65 + k // 10) % 26
             AS INTEGER))
    END"""
# NHS number: a new nine-digit stem, then its modulus-11 check digit (none for 10: dropped).
_NHS_STEM = "lpad(CAST((CAST(substr(id_nhs_number, 1, 9) AS BIGINT) + k * 7368787) % 800000000 AS VARCHAR), 9, '0')"  # noqa: E501
_NHS_CHECK = (
    "(11 - list_sum(list_transform(range(9), lambda i: "
    "CAST(substr(stem, i + 1, 1) AS INTEGER) * (10 - i))) % 11) % 11"
)
# Family name: drawn per person and copy from the base persons' family names (as frequent as
# there), so that given + family name pairs are as varied as independent draws make them.
_FAMILY = """CASE WHEN k = 0 OR family_name IS NULL THEN family_name ELSE
    (SELECT names[CAST(1 + hash(person_id || '-' || k) % len(names) AS BIGINT)] FROM fams) END"""
_NI = """CASE WHEN id_ni_number IS NULL OR k = 0 THEN id_ni_number ELSE
    substr(id_ni_number, 1, 2) ||
    lpad(CAST((CAST(substr(id_ni_number, 3, 6) AS INTEGER) + k * 7919) % 1000000 AS VARCHAR),
         6, '0') ||
    substr(id_ni_number, 9, 1) END"""


def replicate(base: Path, out: Path, records: int) -> int:
    """Write a release-like file of about ``records`` records from the release ``base``."""
    con = duckdb.connect(str(out))
    con.execute(f"ATTACH {sql_str(base)} AS b (READ_ONLY)")
    con.execute(
        "CREATE TEMP TABLE fams AS "
        "SELECT list(family_name) AS names FROM b.persons WHERE family_name IS NOT NULL"
    )
    (n,) = con.sql("SELECT count(*) FROM b.records").fetchall()[0]
    copies = max(1, round(records / n))
    cols = [r[0] for r in con.sql("DESCRIBE b.records").fetchall()]
    replaced = {
        "person_id": f"person_id || {_SUFFIX}",
        "record_key": f"record_key || {_SUFFIX}",
        "source_record_id": f"source_record_id || {_SUFFIX}",
        "family_name": _FAMILY,
        "date_of_birth": _DOB,
        "birth_year": f"CAST(year({_DOB}) AS INTEGER)",
        "postcode": _POSTCODE,
        "id_nhs_number": "CASE WHEN k = 0 OR id_nhs_number IS NULL THEN id_nhs_number "
        "WHEN check_digit = 10 THEN NULL ELSE stem || CAST(check_digit AS VARCHAR) END",
        "id_ni_number": _NI,
        "id_pnc_id": "CASE WHEN k = 0 THEN id_pnc_id END",
    }
    select = ", ".join(f"{replaced.get(c, c)} AS {c}" for c in cols)
    con.execute(f"""
        CREATE TABLE records AS
        WITH copies AS (SELECT range AS k FROM range({copies})),
        stems AS (
            SELECT r.*, k, {_NHS_STEM} AS stem FROM b.records r CROSS JOIN copies
        ),
        checked AS (SELECT *, {_NHS_CHECK} AS check_digit FROM stems)
        SELECT {select} FROM checked ORDER BY person_id, record_key
    """)
    pcols = [r[0] for r in con.sql("DESCRIBE b.persons").fetchall()]
    pselect = ", ".join(f"{replaced.get(c, c)} AS {c}" for c in pcols)
    con.execute(f"""
        CREATE TABLE persons AS
        SELECT {pselect} FROM b.persons CROSS JOIN (SELECT range AS k FROM range({copies}))
        ORDER BY person_id
    """)
    con.execute(
        f"CREATE TABLE runs AS SELECT * REPLACE ({sql_str(out.stem)} AS run_id) FROM b.runs "
        "WHERE run_id = (SELECT max(run_id) FROM b.runs WHERE status = 'published')"
    )
    con.execute("CREATE VIEW crosswalk AS SELECT agency, source_record_id, person_id FROM records")
    (total,) = con.sql("SELECT count(*) FROM records").fetchall()[0]
    con.execute("DETACH b")
    con.close()
    return int(total)


def build_index(root: Path, *, base_persons: int, records: int, seed: int) -> Path:
    """Build (or reuse) the bench folder ``root``; return the config of the replicated index."""
    big_config = root / "big.yaml"
    if big_config.exists():
        print(f"reusing the index in {root}")
        return big_config
    t0 = time.monotonic()
    base_cfg_path = root / "base" / "linkage.yaml"
    if not base_cfg_path.exists():
        write_demo_project(root / "base", persons=base_persons, seed=seed)
    base = load_config(base_cfg_path)
    if current_release(base.paths.index_dir) is None:
        timed_run(base, full=False)  # bench/run_demo.py's run of the library steps
        print(f"base demo: {base_persons} persons, pipeline in {time.monotonic() - t0:.0f}s")
    release = current_release(base.paths.index_dir)
    assert release is not None

    t1 = time.monotonic()
    index_dir = root / "big" / "index"
    shutil.rmtree(index_dir, ignore_errors=True)
    (index_dir / "releases").mkdir(parents=True)
    out = index_dir / "releases" / f"{release.stem}-x.duckdb"
    total = replicate(release, out, records)
    os.chmod(out, 0o444)
    (index_dir / CURRENT).symlink_to(Path("releases") / out.name)
    doc = yaml.safe_load(base_cfg_path.read_text())
    for key in ("index_dir", "work_dir", "reports_dir", "quarantine_dir"):
        doc["paths"][key] = str(root / "big" / key) if key != "index_dir" else str(index_dir)
    doc["model"]["dir"] = str(base.model.dir)
    doc["duckdb"]["temp_directory"] = str(root / "big" / "tmp")
    for agency in doc["agencies"]:  # contracts and sources are resolved against the base
        agency["contract"] = str(base.agency(agency["name"]).contract)
        agency["source"]["path"] = str(base.agency(agency["name"]).source.path)  # type: ignore[union-attr]
    big_config.write_text(yaml.safe_dump(doc, sort_keys=False))
    print(f"replicated to {total:,} records in {time.monotonic() - t1:.0f}s: {out}")
    return big_config


# --- queries --------------------------------------------------------------------------------------


def _typo(name: str, rng: random.Random) -> str:
    if len(name) < 4:
        return name
    i = rng.randrange(1, len(name) - 2)
    return name[:i] + name[i + 1] + name[i] + name[i + 2 :]


def _case(name: str, rng: random.Random) -> str:
    return rng.choice([name, name.lower(), name.title(), f"  {name.title()} "])


def make_queries(config_path: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` varied queries built from records sampled from the index."""
    cfg = load_config(config_path)
    release = current_release(cfg.paths.index_dir)
    con = duckdb.connect(str(release), read_only=True)
    rows = con.sql(
        "SELECT given_name, family_name, CAST(date_of_birth AS VARCHAR), postcode, "
        f"id_nhs_number, id_ni_number FROM records USING SAMPLE {n * 2} ROWS (reservoir, {seed})"
    ).fetchall()
    con.close()
    rng = random.Random(seed)
    kinds = ["full", "name_dob", "family_dob", "name_postcode", "nhs", "ni", "typo"]
    weights = [25, 25, 15, 10, 10, 5, 10]
    out: list[dict[str, Any]] = []
    for given, family, dob, postcode, nhs, ni in rows:
        kind = rng.choices(kinds, weights)[0]
        q: dict[str, Any] = {}
        if kind in ("full", "name_dob", "typo") and given and family and dob:
            q = {
                "given_name": _case(given, rng),
                "family_name": _case(family, rng),
                "date_of_birth": dob,
            }
            if kind == "typo":
                q["family_name"] = _typo(family, rng).title()
            if kind == "full" and postcode:
                q["postcode"] = postcode.replace(" ", "").lower()
        elif kind == "family_dob" and family and dob:
            q = {"family_name": _case(family, rng), "date_of_birth": dob}
        elif kind == "name_postcode" and given and family and postcode:
            q = {"given_name": given, "family_name": family, "postcode": postcode.lower()}
        elif kind == "nhs" and nhs:
            q = {"identifiers": {"nhs_number": f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"}}
        elif kind == "ni" and ni:
            q = {"identifiers": {"ni_number": ni.lower()}}
        if q:
            out.append(q)
        if len(out) == n:
            break
    return out


# --- server and load ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(config_path: Path, port: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("linkage")
    cmd = [str(exe), "serve", "--config", str(config_path), "--port", str(port)]
    log = config_path.with_name("server.log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 600:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                print(f"server ready in {time.monotonic() - t0:.1f}s (pid {proc.pid})")
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start within 10 minutes")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(
    port: int, queries: list[dict[str, Any]], rate: float, seconds: float
) -> tuple[list[float], list[str], list[tuple[float, float, float]]]:
    """Send ``rate`` requests a second for ``seconds``; return latencies (ms), errors, loads."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors: list[str] = []
    loads: list[tuple[float, float, float]] = []
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30,
        headers={"X-User": "bench"},
    ) as client:  # fmt: skip

        async def one(at: float, i: int) -> None:
            await asyncio.sleep(max(0.0, at - loop.time()))
            q = queries[i % len(queries)]
            try:
                if i % 2:
                    r = await client.post("/search", json=q)
                else:
                    params: list[tuple[str, str]] = [
                        (k, v) for k, v in q.items() if k != "identifiers"
                    ]
                    params += [("id", f"{s}={v}") for s, v in q.get("identifiers", {}).items()]
                    r = await client.get("/search", params=params)
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code}: {r.json().get('error')}")
            except httpx.HTTPError as e:
                errors.append(type(e).__name__)
            latencies.append((loop.time() - at) * 1000)

        async def sample_load() -> None:
            while True:
                loads.append(os.getloadavg())
                await asyncio.sleep(5)

        sampler = asyncio.create_task(sample_load())
        start = loop.time() + 0.2
        total = int(rate * seconds)
        await asyncio.gather(*(one(start + i / rate, i) for i in range(total)))
        sampler.cancel()
    return latencies, errors, loads


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, default=None, help="bench folder to build or reuse")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--base-persons", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds at the rate, not counted")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep a temporary bench folder")
    ap.add_argument(
        "--project", type=Path, default=None,
        help="search an existing project's current release instead (e.g. bench/run_demo.py's)",
    )  # fmt: skip
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("splink").setLevel(logging.WARNING)

    root = args.index or Path(tempfile.mkdtemp(prefix="linkage-search-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"bench folder {root}; load before: {os.getloadavg()}")
    config_path = args.project or build_index(
        root, base_persons=args.base_persons, records=args.records, seed=args.seed
    )
    queries = make_queries(config_path, 5_000, args.seed)
    port = free_port()
    server = start_server(config_path, port)
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        print(f"index: {health['records']:,} records, {health['persons']:,} persons")
        if args.warmup:
            asyncio.run(load(port, queries[::-1], args.rate, args.warmup))
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        latencies, errors, loads = asyncio.run(load(port, queries, args.rate, args.seconds))
        cpu, wall = cpu_seconds(server.pid) - cpu0, time.monotonic() - t0
        rss = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    n = len(latencies)
    summary = {
        "records": health["records"],
        "requests": n,
        "errors": len(errors),
        "rate_achieved": round(n / wall, 1),
        "p50_ms": round(pct(latencies, 50), 1),
        "p95_ms": round(pct(latencies, 95), 1),
        "p99_ms": round(pct(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "server_cpu_ms_per_request": round(cpu / n * 1000, 1),
        "server_peak_rss_mb": round(rss),
        "loadavg_during": [round(x, 2) for x in max(loads, default=(0, 0, 0), key=lambda x: x[0])],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(summary, indent=2))
    if errors:
        print("first errors:", sorted(set(errors))[:5])
    ok = not errors and summary["p50_ms"] <= 20 and summary["p99_ms"] <= 100
    print("target p50 <= 20 ms, p99 <= 100 ms, no errors:", "met" if ok else "NOT met")
    if args.index is None and not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
