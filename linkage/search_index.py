"""One published release loaded for search: an in-memory DuckDB, blocking keys and the model.

Loading attaches the release read-only, copies what search needs into memory and detaches it, so
the service holds no handle on the release file (a publish, a rollback or the clean-up of old
releases is never blocked by it). Then file access is switched off and the settings locked: every
later statement runs with ``enable_external_access=false`` and binds its values as parameters.

* ``search_records``: the release's records with ``rid`` (row id), the given-name variants, a
  ``tf_<column>`` term frequency per column the model adjusts for, and the person's best-known
  attributes (``person_<attribute>``, from ``persons``);
* ``search_persons``: the release's persons (for lookups); ``nicknames``;
* one macro ``gamma_<comparison>`` per comparison of the model (its levels' SQL, verbatim);
* the blocking keys (:data:`BLOCKING_KEYS`, identifiers and record keys) of every record, as
  sorted 64-bit hashes with their ``rid``: finding candidates is a binary search in memory;
* by ``rid``, each record's person id, record key, term frequencies and person attributes (a
  polars frame), so that the per-request SQL computes only the agreement levels.

At 1M records this takes about 6 s and 1.5 GB.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from linkage.config import ProjectConfig
from linkage.db import quote, sql_str
from linkage.search_query import StandardQuery
from linkage.search_scoring import Comparison, ScoringModel
from linkage.standardise.nicknames import VARIANTS_COLUMN, register_nicknames, variants_sql
from schemas.canonical import identifier_column

log = logging.getLogger(__name__)

#: Blocking keys (the nightly model's rules that a query can hold): name -> fields. A record or a
#: query gets a key for each whose fields it holds; given and family names are also tried the
#: other way round. Any shared identifier is a key too. Unlike the nightly rule, ``gf`` keeps the
#: model's common full names: one query's candidates, not a million records' pairs.
BLOCKING_KEYS: dict[str, tuple[str, str]] = {
    "fd": ("family_name", "date_of_birth"),
    "gd": ("given_name", "date_of_birth"),
    "gf": ("given_name", "family_name"),
    "pf": ("postcode", "family_name"),
    "pg": ("postcode", "given_name"),
    "pd": ("postcode", "date_of_birth"),
}
_SEP = "\x1f"  # never in a standardised value

#: Columns compared by the model (besides ``id_<scheme>``), in the canonical record's order.
COMPARED = (
    "given_name",
    "middle_names",
    "family_name",
    "date_of_birth",
    "sex",
    "address",
    "postcode",
    "postcode_district",
)
#: The persons table's columns copied onto each record, as ``person_<column>``.
PERSON_COLUMNS = (
    "record_count",
    "agencies",
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "postcode",
)
_HASH_SEED = 0x5EA2C4


def key_text(*parts: str) -> str:
    """The text a blocking key hashes (the same in SQL and Python)."""
    return _SEP.join(parts)


def _value_text(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def query_keys(query: StandardQuery) -> list[str]:
    """The blocking keys of a standardised query."""
    v = query.values
    keys = [key_text("id", s, x) for s, x in sorted(query.identifiers.items())]
    for name, (a, b) in BLOCKING_KEYS.items():
        if v[a] is not None and v[b] is not None:
            keys.append(key_text(name, _value_text(v[a]), _value_text(v[b])))
    if v["given_name"] is not None and v["family_name"] is not None:
        keys.append(key_text("gf", v["family_name"], v["given_name"]))  # reversed names
    return list(dict.fromkeys(keys))


def _hashes(texts: list[str] | pl.Series) -> np.ndarray:
    return pl.Series(texts, dtype=pl.String).hash(seed=_HASH_SEED).to_numpy()


@dataclass(frozen=True)
class Scored:
    """One candidate record scored against a query, with its person's best-known attributes."""

    person_id: str
    record_key: str
    match_weight: float
    gammas: dict[str, int]
    weights: dict[str, float]
    person: dict[str, Any]


class ReleaseIndex:
    """A release loaded for search (see the module docstring). Thread-safe: one cursor per call."""

    def __init__(
        self,
        release: Path,
        identity: tuple[int, ...],
        config: ProjectConfig,
        model: ScoringModel,
        model_version: str,
        tf_tables: dict[str, Path] | None = None,
    ) -> None:
        started = time.monotonic()
        self.tf_tables = tf_tables or {}
        self.release = release
        self.identity = identity
        self.model = model
        self.model_version = model_version
        self.schemes = sorted(config.identifiers)
        self.con = duckdb.connect(
            ":memory:",
            config={
                "memory_limit": config.duckdb.memory_limit,
                "threads": config.duckdb.threads,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            },
        )
        try:
            self.con.execute(f"ATTACH {sql_str(release)} AS rel (READ_ONLY)")
            try:
                self._load()
            finally:
                self.con.execute("DETACH rel")
            # One thread per query: queries are tiny, and concurrent requests run side by side.
            self.con.execute("SET threads = 1")
            self.con.execute("SET enable_external_access = false")
            self.con.execute("SET lock_configuration = true")
        except BaseException:
            self.con.close()
            raise
        self._score_sql: dict[tuple[int, tuple[str, ...]], str] = {}
        self.records = self._count("search_records")
        self.persons = self._count("search_persons")
        log.info(
            "search index of %s: %d records, %d persons in %.1fs",
            release.name,
            self.records,
            self.persons,
            time.monotonic() - started,
        )

    @property
    def run_id(self) -> str:
        return self.release.stem

    def _count(self, table: str) -> int:
        return int(self.con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0])

    # --- loading ----------------------------------------------------------------------------------

    def _load(self) -> None:
        con = self.con
        have = {r[0] for r in con.sql("DESCRIBE rel.records").fetchall()}
        self.columns = [c for c in (*COMPARED, *map(identifier_column, self.schemes)) if c in have]
        con.execute(f"CREATE TABLE nicknames AS SELECT * FROM {register_nicknames(con)}")
        tf_select, tf_joins = [], []
        for c in self.model.tf_columns:
            col = quote(c)
            if c in self.tf_tables:  # the model's own term frequencies, as the nightly run uses
                con.execute(
                    f"CREATE TABLE tf_{c} AS SELECT {col} AS value, {quote('tf_' + c)} AS tf "
                    f"FROM read_parquet({sql_str(self.tf_tables[c])})"
                )
            else:  # a model saved without them: counted from the release, as Splink would
                con.execute(
                    f"CREATE TABLE tf_{c} AS SELECT {col} AS value, "
                    f"count(*)::DOUBLE / (SELECT count({col}) FROM rel.records) AS tf "
                    f"FROM rel.records WHERE {col} IS NOT NULL GROUP BY {col}"
                )
            tf_select.append(f", tf_{c}.tf AS tf_{c}")
            tf_joins.append(f"LEFT JOIN tf_{c} ON tf_{c}.value = r.{col}")
        cols = ", ".join(f"r.{quote(c)}" for c in self.columns)
        person = ", ".join(f"p.{quote(c)} AS person_{c}" for c in PERSON_COLUMNS)
        variants = variants_sql("r.given_name")
        con.execute(f"""
            CREATE TABLE search_records AS
            SELECT (row_number() OVER (ORDER BY r.person_id, r.record_key) - 1)::INTEGER AS rid,
                   r.person_id, r.record_key, r.agency, r.source_record_id, {cols},
                   {variants} AS {VARIANTS_COLUMN}{"".join(tf_select)}, {person}
            FROM rel.records r
            LEFT JOIN nicknames n ON n.nickname = r.given_name
            LEFT JOIN rel.persons p ON p.person_id = r.person_id
            {" ".join(tf_joins)}
            ORDER BY rid
        """)
        con.execute("CREATE INDEX search_records_rid ON search_records (rid)")
        con.execute("CREATE INDEX search_records_person ON search_records (person_id)")
        con.execute("CREATE TABLE search_persons AS SELECT * FROM rel.persons ORDER BY person_id")
        con.execute("CREATE INDEX search_persons_id ON search_persons (person_id)")
        for comparison in self.model.comparisons:
            con.execute(comparison.macro_sql)
        # what a scored candidate's answer needs, by rid (= row number): read from memory
        tf = "".join(f", tf_{c}" for c in self.model.tf_columns)
        person = "".join(f", person_{c}" for c in PERSON_COLUMNS)
        self._rows = con.sql(
            f"SELECT person_id, record_key{tf}{person} FROM search_records ORDER BY rid"
        ).pl()
        keys = con.sql(self._keys_sql()).pl()
        order = np.argsort(h := _hashes(keys["key"]), kind="stable")
        self._key_hashes = h[order]
        self._key_rids = keys["rid"].to_numpy()[order]
        self.nicknames: dict[str, list[str]] = dict(
            con.sql("SELECT nickname, formals FROM nicknames").fetchall()
        )
        self.tf: dict[str, dict[Any, float]] = {
            c: dict(con.sql(f"SELECT value, tf FROM tf_{c}").fetchall())
            for c in self.model.tf_columns
        }

    def distinct(self, column: str, limit: int = 200_000) -> list[str]:
        """The most frequent values of ``column`` of the records, as text."""
        cur = self.con.cursor()
        try:
            rows = cur.execute(
                f"SELECT CAST({quote(column)} AS VARCHAR) FROM search_records "
                f"WHERE {quote(column)} IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT ?",
                [limit],
            ).fetchall()
        finally:
            cur.close()
        return [r[0] for r in rows]

    def _keys_sql(self) -> str:
        """Every record's keys as text (``key``) with its ``rid``; see :func:`key_text`."""

        def text(*exprs: str) -> str:
            return f" || '{_SEP}' || ".join(exprs)

        def as_text(c: str) -> str:
            return f"CAST({quote(c)} AS VARCHAR)"

        parts = [f"SELECT {text(sql_str('rk'), 'record_key')} AS key, rid FROM search_records"]
        for s in self.schemes:
            col = identifier_column(s)
            if col in self.columns:
                parts.append(
                    f"SELECT {text(sql_str('id'), sql_str(s), quote(col))}, rid "
                    f"FROM search_records WHERE {quote(col)} IS NOT NULL"
                )
        for name, (a, b) in BLOCKING_KEYS.items():
            if a in self.columns and b in self.columns:
                parts.append(
                    f"SELECT {text(sql_str(name), as_text(a), as_text(b))}, rid "
                    f"FROM search_records WHERE {quote(a)} IS NOT NULL AND {quote(b)} IS NOT NULL"
                )
        return " UNION ALL ".join(parts)

    # --- queries ----------------------------------------------------------------------------------

    def rids(self, keys: list[str]) -> list[int]:
        """The rids of the records holding any of ``keys`` (a hash collision only adds a
        candidate: every use checks the values themselves)."""
        if not keys:
            return []
        h = _hashes(keys)
        lo = np.searchsorted(self._key_hashes, h, side="left")
        hi = np.searchsorted(self._key_hashes, h, side="right")
        found: set[int] = set()
        for a, b in zip(lo, hi, strict=True):
            found.update(self._key_rids[a:b].tolist())
        return sorted(found)

    def _scoring_sql(self, n: int, active: tuple[Comparison, ...]) -> str:
        """The scoring statement for ``n`` candidates and the ``active`` comparisons: one text
        per shape, cached, short (the levels' SQL is in the ``gamma_<comparison>`` macros, the
        candidates' other columns are read from memory by rid); values are bound parameters."""
        shape = (n, tuple(c.name for c in active))
        if shape not in self._score_sql:
            types = {"date_of_birth": "DATE", VARIANTS_COLUMN: "VARCHAR[]"}
            left = (
                ", ".join(f"?::{types.get(c, 'VARCHAR')} AS {c}" for c in self._inputs(active))
                or "NULL AS nothing"
            )
            gammas = "".join(
                f', "gamma_{c.name}"('
                + ", ".join(f"{side}.{col}" for col in c.inputs for side in ("l", "r"))
                + f") AS gamma_{c.name}"
                for c in active
            )
            marks = ", ".join("?" for _ in range(n))
            self._score_sql[shape] = (
                f"SELECT r.rid{gammas} FROM (SELECT {left}) l, search_records r "
                f"WHERE r.rid IN ({marks})"
            )
        return self._score_sql[shape]

    @staticmethod
    def _inputs(active: tuple[Comparison, ...]) -> list[str]:
        return sorted({col for c in active for col in c.inputs})

    def _left(self, query: StandardQuery, active: tuple[Comparison, ...]) -> list[Any]:
        """The query's side of each pair: the values the active comparisons read, with the
        given name's variants."""
        v = query.values
        given = v["given_name"]
        variants = None if given is None else sorted({given, *self.nicknames.get(given, ())})
        return [variants if c == VARIANTS_COLUMN else v[c] for c in self._inputs(active)]

    def score(self, query: StandardQuery, *, record_keys: list[str] | None = None) -> list[Scored]:
        """Every candidate record of ``query`` (found by blocking, or the records
        ``record_keys``), scored with the model."""
        keys = (
            query_keys(query) if record_keys is None else [key_text("rk", k) for k in record_keys]
        )
        rids = self.rids(keys)
        if not rids:
            return []
        active = self.model.active(query.values)
        cur = self.con.cursor()
        try:
            rows = cur.execute(
                self._scoring_sql(len(rids), active), [*self._left(query, active), *rids]
            ).fetchall()
        finally:
            cur.close()
        # the query's term frequencies: the share of the records' values it equals
        tf_l = {c: self.tf[c].get(query.values[c]) for c in self.model.tf_columns}
        out = []
        for rid, *levels in rows:
            r = self._rows.row(rid, named=True)
            if record_keys is not None and r["record_key"] not in record_keys:
                continue  # a hash collision
            gammas = {c.name: int(g) for c, g in zip(active, levels, strict=True)}
            tf = {c: (tf_l[c], r[f"tf_{c}"]) for c in self.model.tf_columns}
            weight, parts = self.model.weigh(gammas, tf)
            full = {c.name: gammas.get(c.name, c.levels[0].gamma) for c in self.model.comparisons}
            person = {c: r[f"person_{c}"] for c in PERSON_COLUMNS}
            out.append(Scored(r["person_id"], r["record_key"], weight, full, parts, person))
        return out

    def persons_by_id(self, person_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Each person's row of ``persons`` (best-known attributes and counts)."""
        if not person_ids:
            return {}
        marks = ", ".join("?" for _ in person_ids)
        cur = self.con.cursor()
        try:
            rel = cur.execute(
                f"SELECT * FROM search_persons WHERE person_id IN ({marks})", person_ids
            )
            names = [d[0] for d in rel.description]
            rows = rel.fetchall()
        finally:
            cur.close()
        return {r[0]: dict(zip(names, r, strict=True)) for r in rows}

    def persons_of(self, key: str, column: str, value: str) -> list[str]:
        """Persons holding a record whose ``column`` is ``value`` (found through key ``key``)."""
        rids = self.rids([key])
        if not rids:
            return []
        marks = ", ".join("?" for _ in rids)
        cur = self.con.cursor()
        try:
            rows = cur.execute(
                f"SELECT DISTINCT person_id FROM search_records WHERE rid IN ({marks}) "
                f"AND {quote(column)} = ? ORDER BY person_id",
                [*rids, value],
            ).fetchall()
        finally:
            cur.close()
        return [r[0] for r in rows]

    def records_of(self, person_ids: list[str]) -> list[dict[str, Any]]:
        """Every record of these persons: agency, source record id and identifiers."""
        if not person_ids:
            return []
        ids = [identifier_column(s) for s in self.schemes if identifier_column(s) in self.columns]
        marks = ", ".join("?" for _ in person_ids)
        cur = self.con.cursor()
        try:
            id_cols = "".join(f", {quote(c)}" for c in ids)
            rel = cur.execute(
                f"SELECT person_id, agency, source_record_id{id_cols} "
                f"FROM search_records WHERE person_id IN ({marks}) "
                "ORDER BY person_id, agency, source_record_id",
                person_ids,
            )
            names = [d[0] for d in rel.description]
            rows = rel.fetchall()
        finally:
            cur.close()
        return [dict(zip(names, r, strict=True)) for r in rows]

    def close(self) -> None:
        self.con.close()
