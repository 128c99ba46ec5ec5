"""The pseudonymised analyst release: no direct identifiers, keyed-hash pseudonyms.

Written beside each identifiable release as ``<index_dir>/analyst/<run_id>.duckdb`` with its own
``analyst/current.duckdb`` pointer. Person IDs and record keys are replaced by HMAC-SHA256
pseudonyms under a secret key kept outside the repository (``analyst_release.key_file``): the same
person gets the same pseudonym in every release of one project, and projects with different keys
get pseudonyms that do not join. Persons carry only the attributes the configuration allows.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb

from linkage.config import AnalystRelease
from linkage.db import order_by, sql_str
from linkage.errors import KeyFileError
from linkage.incremental import detail_columns
from linkage.publish import RELEASES

log = logging.getLogger(__name__)

ANALYST_DIR = "analyst"
#: How each allowed person attribute is derived from the identifiable ``persons`` table.
ATTRIBUTES = {
    "birth_year": "year(p.date_of_birth)",
    "sex": "p.sex",
    "postcode_district": "split_part(p.postcode, ' ', 1)",
}
_PERSON_COLUMNS = ("person", "record_count", "agency_count", "agencies")
_KEY_BYTES = 32


def create_key(path: Path) -> None:
    """Write a new random key (hex) to ``path``, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(_KEY_BYTES) + "\n")


def load_key(settings: AnalystRelease) -> bytes:
    path = settings.key_file
    if not path.exists() and settings.create_key_if_missing:
        create_key(path)
        log.warning("created a new pseudonymisation key at %s (keep it secret and backed up)", path)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise KeyFileError(
            f"analyst_release.key_file {path} does not exist; create one with "
            f"`linkage keygen --out {path}` and keep it outside the repository"
        ) from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise KeyFileError(
            f"analyst_release.key_file {path} does not hold a hex key of at least 16 bytes; "
            "create one with `linkage keygen`"
        )
    if path.stat().st_mode & 0o077:
        raise KeyFileError(f"{path} is readable by others; run `chmod 600 {path}`")
    return key


def define_pseudonym(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """Define the temporary SQL macro ``pseudonym(prefix, value)``: ``prefix`` and the first 20
    hex digits of HMAC-SHA256(key, value) (RFC 2104, computed in SQL: vectorised, and the key
    lives only in this connection's temporary catalogue, never in a file)."""
    block = key if len(key) <= 64 else hashlib.sha256(key).digest()
    block = block.ljust(64, b"\0")
    inner = bytes(b ^ 0x36 for b in block).hex()
    outer = bytes(b ^ 0x5C for b in block).hex()
    con.execute(
        "CREATE OR REPLACE TEMP MACRO pseudonym(prefix, v) AS CASE WHEN v IS NOT NULL THEN "
        f"prefix || left(sha256(unhex('{outer}') || unhex(sha256(unhex('{inner}') || "
        "encode(v)))), 20) END"
    )


def write_analyst_release(
    release: Path,
    index_dir: Path,
    settings: AnalystRelease,
    connection: Callable[[], duckdb.DuckDBPyConnection] = duckdb.connect,
) -> Path:
    """Build the analyst release of ``release`` (an identifiable release file); return its path.

    ``connection`` opens the in-memory working database (in a run: with the project's memory
    limit and spill folder)."""
    key = load_key(settings)
    folder = index_dir / ANALYST_DIR
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / release.name
    partial = folder / f".{release.name}.partial"
    partial.unlink(missing_ok=True)
    con = connection()
    try:
        define_pseudonym(con, key)
        base = _reusable(con, index_dir, release, settings.attributes)
        if base is not None:  # a copy of the current one, with what differs written in
            shutil.copyfile(folder / base.name, partial)
            os.chmod(partial, 0o600)
            con.execute(f"ATTACH {sql_str(base)} AS old (READ_ONLY)")
        con.execute(f"ATTACH {sql_str(release)} AS src (READ_ONLY)")
        con.execute(f"ATTACH {sql_str(partial)} AS out")
        if base is None:
            _build(con, settings.attributes)
        else:
            _write_changes(con, settings.attributes)
        con.execute("DETACH out")
    finally:
        con.close()
    os.chmod(partial, 0o444)
    os.replace(partial, final)
    link = folder / f".current.{release.stem}"
    link.unlink(missing_ok=True)
    link.symlink_to(final.name)
    os.replace(link, folder / "current.duckdb")
    for old in sorted(folder.glob("*.duckdb")):
        pruned = not (index_dir / RELEASES / old.name).exists()
        if old.name not in ("current.duckdb", final.name) and pruned:
            old.unlink()  # its identifiable release was pruned
    log.info(
        "published the analyst release %s%s", final,
        f" as the changes since {base.name}" if base is not None else "",
    )  # fmt: skip
    return final


def _reusable(
    con: duckdb.DuckDBPyConnection, index_dir: Path, release: Path, attributes: tuple[str, ...]
) -> Path | None:
    """The identifiable release of the current analyst release, when the analyst release of
    ``release`` can be written as a copy of it with the differences between the two
    identifiable releases written in: it is another release that still exists, made with the
    same key, the same person attributes and the same comparisons in its links."""
    current = analyst_current(index_dir)
    if current is None or current.name == release.name:
        return None
    base = index_dir / RELEASES / current.name
    if not base.exists():
        return None
    con.execute(f"ATTACH {sql_str(current)} AS was (READ_ONLY)")
    con.execute(f"ATTACH {sql_str(base)} AS old (READ_ONLY)")
    con.execute(f"ATTACH {sql_str(release)} AS new (READ_ONLY)")
    try:
        persons = con.sql(
            "SELECT list(column_name ORDER BY column_index) FROM duckdb_columns() "
            "WHERE database_name = 'was' AND table_name = 'persons'"
        ).fetchall()[0][0]
        (same_key,) = con.sql(
            "SELECT count(*) > 0 FROM was.crosswalk WHERE record = "
            "(SELECT pseudonym('R', record_key) FROM old.records LIMIT 1)"
        ).fetchall()[0]
        # Another model may compare other things: its links have other detail columns.
        same_details = detail_columns(con, "links", "was") == detail_columns(con, "links", "new")
    finally:
        con.execute("DETACH was; DETACH old; DETACH new")
    same_persons = persons == [*_PERSON_COLUMNS, *attributes]
    return base if same_key and same_persons and same_details else None


def _write_changes(con: duckdb.DuckDBPyConnection, attributes: tuple[str, ...]) -> None:
    """Turn ``out`` (a copy of the analyst release of identifiable release ``old``) into the
    analyst release of ``src``: the rows of records, persons and links that differ between the
    two (or went) are rewritten, ``src``'s new lineage appended and runs and extracts replaced.
    Only those rows are pseudonymised (tested: the same tables as :func:`_build` writes)."""
    detail = "".join(", p." + c for c in detail_columns(con, "links", "src"))
    attrs = "".join(f", {ATTRIBUTES[a]} AS {a}" for a in attributes)

    def record(side: str = "") -> str:
        return f"pseudonym('R', p.record_key{side})"

    def person(side: str = "") -> str:
        return f"pseudonym('A', p.person_id{side})"

    # Per table: the analyst table, the columns compared, the key and its pseudonym in the
    # analyst table (pseudonyms have one length, so two concatenated are one key), the row.
    for table, out, compared, key, pseudonym_key, row in (
        (
            "records", "crosswalk", "record_key, person_id, agency, dob_precision, quality_flags",
            "record_key", ("record", record()),
            f"p.agency, {record()} AS record, {person()} AS person, "
            "p.dob_precision, p.quality_flags",
        ),
        (
            "persons", "persons", "*", "person_id", ("person", person()),
            f"{person()} AS person, p.record_count, p.agency_count, p.agencies {attrs}",
        ),
        (
            "links", "links", "*", "record_key_l, record_key_r",
            ("record_l || record_r", f"{record('_l')} || {record('_r')}"),
            f"{person('_l')} AS person_l, {person('_r')} AS person_r, "
            f"{record('_l')} AS record_l, {record('_r')} AS record_r, "
            f"p.match_weight, p.match_probability, p.linked, p.grade, p.veto {detail}",
        ),
    ):  # fmt: skip
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE __new AS "
            f"SELECT {compared} FROM src.{table} EXCEPT SELECT {compared} FROM old.{table}"
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE __gone AS SELECT {key} FROM __new "
            f"UNION SELECT {key} FROM old.{table} ANTI JOIN src.{table} USING ({key})"
        )
        con.execute(
            f"DELETE FROM out.{out} WHERE {pseudonym_key[0]} IN "
            f"(SELECT {pseudonym_key[1]} FROM __gone p)"
        )
        con.execute(f"INSERT INTO out.{out} BY NAME SELECT {row} FROM __new p")
    con.execute("DROP TABLE __new; DROP TABLE __gone")
    con.execute("""
        INSERT INTO out.lineage BY NAME
        SELECT run_id, event, pseudonym('A', person_id) AS person,
               pseudonym('A', related_person_id) AS related_person, records
        FROM src.lineage WHERE run_id NOT IN (SELECT run_id FROM old.lineage)
    """)
    con.execute("DROP TABLE out.runs; DROP TABLE out.extracts")
    con.execute("CREATE TABLE out.runs AS SELECT * EXCLUDE (config_path, override) FROM src.runs")
    con.execute("CREATE TABLE out.extracts AS SELECT * EXCLUDE (source) FROM src.extracts")


def _build(con: duckdb.DuckDBPyConnection, attributes: tuple[str, ...]) -> None:
    # Each ID is hashed once, then joined in: one join per statement, so that only one hash
    # table is held at a time (it spills to disk under the memory limit; several do not).
    con.execute("""
        CREATE TEMP TABLE pp AS
        SELECT id, pseudonym('A', id) AS pseudonym FROM (
            SELECT person_id AS id FROM src.persons
            UNION SELECT person_id FROM src.lineage
            UNION SELECT related_person_id FROM src.lineage WHERE related_person_id IS NOT NULL)
    """)
    con.execute("""
        CREATE TEMP TABLE rp AS
        SELECT r.record_key AS id, pseudonym('R', r.record_key) AS record, pp.pseudonym AS person
        FROM src.records r JOIN pp ON pp.id = r.person_id
    """)
    (rows,) = con.sql("SELECT count(*) FROM rp").fetchall()[0]
    order = functools.partial(order_by, con, rows)  # sorted, unless the memory limit is too small
    attrs = "".join(f", {ATTRIBUTES[a]} AS {a}" for a in attributes)
    con.execute(f"""
        CREATE TABLE out.persons AS
        SELECT pp.pseudonym AS person, p.record_count, p.agency_count, p.agencies {attrs}
        FROM src.persons p JOIN pp ON pp.id = p.person_id {order("person")}
    """)
    con.execute(f"""
        CREATE TABLE out.crosswalk AS
        SELECT r.agency, rp.record, rp.person, r.dob_precision, r.quality_flags
        FROM src.records r JOIN rp ON rp.id = r.record_key {order("person, record")}
    """)
    # A link's persons are its records' persons.
    detail = "".join(", l." + c for c in detail_columns(con, "links", "src"))
    con.execute(f"""
        CREATE TEMP TABLE half AS
        SELECT rp.person AS person_l, rp.record AS record_l, l.record_key_r, l.match_weight,
               l.match_probability, l.linked, l.grade, l.veto {detail}
        FROM src.links l JOIN rp ON rp.id = l.record_key_l
    """)
    con.execute(f"""
        CREATE TABLE out.links AS
        SELECT l.person_l, rp.person AS person_r, l.record_l, rp.record AS record_r,
               l.match_weight, l.match_probability, l.linked, l.grade, l.veto {detail}
        FROM half l JOIN rp ON rp.id = l.record_key_r {order("record_l, record_r")}
    """)
    con.execute("DROP TABLE half")
    con.execute(f"""
        CREATE TABLE out.lineage AS
        SELECT l.run_id, l.event, a.pseudonym AS person, b.pseudonym AS related_person, l.records
        FROM src.lineage l JOIN pp a ON a.id = l.person_id
        LEFT JOIN pp b ON b.id = l.related_person_id {order("l.run_id, l.event, person")}
    """)
    con.execute("CREATE TABLE out.runs AS SELECT * EXCLUDE (config_path, override) FROM src.runs")
    con.execute("CREATE TABLE out.extracts AS SELECT * EXCLUDE (source) FROM src.extracts")
    con.execute("DROP TABLE pp; DROP TABLE rp")


def analyst_current(index_dir: Path) -> Path | None:
    link = index_dir / ANALYST_DIR / "current.duckdb"
    return link.resolve() if link.exists() else None
