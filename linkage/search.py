"""Search the master person index: query by example, and identifier cross-reference (PIXm).

A :class:`Searcher` is built once (CLI command, API start-up) from the project config. It loads
the current release into memory (:mod:`linkage.search_index`) and scores with the model and
thresholds of the nightly run (:mod:`linkage.search_scoring`). Each call checks (one ``stat``)
whether ``current.duckdb`` now points to another release, and loads that one first if so.

Safety: a query must be specific enough (:func:`~linkage.search_query.check_specificity`), at
most ``search.result_cap`` persons are returned, every value is bound as a SQL parameter, and
every search and lookup, answered or refused, is written to the audit log
(:mod:`linkage.search_audit`). Ordinary logs get counts and timings only.

Example::

    searcher = Searcher(load_config("linkage.yaml"))
    q = SearchQuery(family_name="O'Brien", date_of_birth="1984-03-01")
    for m in searcher.search(q, user="jsmith").matches:
        print(m.person.person_id, m.grade, m.match_probability, m.why)
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar

import duckdb
from pydantic import BaseModel, Field

from linkage.config import ModelConfig, ProjectConfig
from linkage.db import hardened
from linkage.errors import InvalidQueryError, QueryError, SearchError
from linkage.model import ModelArtefact, load_model
from linkage.publish import CURRENT
from linkage.search_audit import AuditLog
from linkage.search_index import ReleaseIndex, Scored, key_text
from linkage.search_query import (
    SearchQuery,
    check_specificity,
    prewarm_index,
    standardise_identifier,
    standardise_query,
)
from linkage.search_scoring import ScoringModel, compile_model, match_probability
from schemas.canonical import identifier_column

log = logging.getLogger(__name__)

Grade = Literal["certain", "probable", "possible"]
T = TypeVar("T")


class Person(BaseModel):
    """A person's best-known attributes (the ``persons`` table's survivorship rule)."""

    person_id: str
    given_name: str | None = None
    family_name: str | None = None
    date_of_birth: date | None = None
    sex: str | None = None
    postcode: str | None = None
    record_count: int = 0
    agencies: list[str] = Field(default_factory=list)


class Contribution(BaseModel):
    """One comparison's part in a match: the level reached and its match weight."""

    comparison: str
    level: str
    match_weight: float


class Match(BaseModel):
    person: Person
    match_probability: float
    match_weight: float
    grade: Grade
    record_key: str = Field(description="The person's best-matching record.")
    why: list[Contribution]


class SearchResult(BaseModel):
    release: str
    candidates: int = Field(description="Records scored (found by blocking).")
    capped: bool = Field(description="More persons scored above the threshold than returned.")
    prior_match_weight: float = Field(description="The model's prior; plus `why` = the weight.")
    matches: list[Match]


class AgencyRecord(BaseModel):
    agency: str
    source_record_id: str
    identifiers: dict[str, str]


class LinkedPerson(BaseModel):
    person: Person
    records: list[AgencyRecord]


class LookupResult(BaseModel):
    release: str
    persons: list[LinkedPerson]


def grade_for(probability: float, model: ModelConfig) -> Grade:
    """``certain`` at or above ``model.certain_threshold``, ``probable`` at or above
    ``model.cluster_threshold`` (the nightly run would link it), ``possible`` below."""
    if probability >= model.certain_threshold:
        return "certain"
    if probability >= model.cluster_threshold:
        return "probable"
    return "possible"


def _asked(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v not in (None, "", [], {})}


def _person(row: dict[str, Any]) -> Person:
    return Person(**{k: v for k, v in row.items() if k in Person.model_fields and v is not None})


class Searcher:
    """Answers searches and lookups on the current release (thread-safe)."""

    def __init__(self, config: ProjectConfig, *, audit: AuditLog | None = None) -> None:
        self.config = config
        self.audit = audit or AuditLog(config.paths.index_dir / "audit")
        self._lock = threading.Lock()
        self._models: dict[str, ScoringModel] = {}
        self._index: ReleaseIndex | None = None
        self.index()  # fail now, not on the first request, when there is nothing to search

    # --- the release ------------------------------------------------------------------------------

    def index(self) -> ReleaseIndex:
        """The loaded release, reloaded first if ``current.duckdb`` has moved."""
        link = self.config.paths.index_dir / CURRENT
        try:
            st = os.stat(link)
        except FileNotFoundError:
            raise QueryError(
                f"no published index in {self.config.paths.index_dir}; run `linkage run` first"
            ) from None
        identity = (st.st_dev, st.st_ino, st.st_mtime_ns)
        index = self._index
        if index is not None and index.identity == identity:
            return index
        with self._lock:
            if self._index is None or self._index.identity != identity:
                self._index = self._load(link.resolve())
            return self._index

    def _load(self, release: Path) -> ReleaseIndex:
        gc.unfreeze()  # the previous release's objects may go now
        st = os.stat(release)
        artefact = self._model_for(release)
        if artefact.version not in self._models:
            self._models[artefact.version] = compile_model(artefact.settings_path)
        index = ReleaseIndex(
            release,
            (st.st_dev, st.st_ino, st.st_mtime_ns),
            self.config,
            self._models[artefact.version],
            artefact.version,
            artefact.tf_tables(),
        )
        prewarm_index(
            self.config,
            *(
                index.distinct(c)
                for c in ("given_name", "family_name", "date_of_birth", "postcode")
            ),
        )
        # The index and the cache are long-lived: keep the garbage collector's full passes off
        # them (they took about 100 ms at 1M records, a pause for every request in flight).
        gc.collect()
        gc.freeze()
        return index

    def _model_for(self, release: Path) -> ModelArtefact:
        """The model version the release was built with, if it is still there; else the
        configured one."""
        con = hardened(release)
        try:
            rows = con.execute(
                "SELECT model_version FROM runs WHERE run_id = ?", [release.stem]
            ).fetchall()
        except duckdb.Error:
            rows = []
        finally:
            con.close()
        configured = load_model(self.config)
        version = rows[0][0] if rows and rows[0][0] else None
        if version and version != configured.version:
            path = self.config.model.dir / version
            if (path / "splink_model.json").exists():
                return ModelArtefact(
                    path, version, configured.fields, configured.identifier_schemes
                )
        return configured

    # --- audit wrapper ----------------------------------------------------------------------------

    def _audited(
        self,
        action: Literal["search", "lookup"],
        user: str,
        asked: dict[str, Any],
        answer: Callable[[], T],
        count: Callable[[T], int],
    ) -> T:
        release = self._index.run_id if self._index else None
        try:
            if not isinstance(user, str) or not user.strip() or len(user) > 200:
                raise SearchError("a user name is required (who is searching)", reason="no_user")
            result = answer()
        except SearchError as e:
            self.audit.record(
                user=str(user), action=action, query=asked, results=0, outcome="refused",
                reason=e.reason, release=release,
            )  # fmt: skip
            raise
        except Exception as e:
            self.audit.record(
                user=user, action=action, query=asked, results=0, outcome="error",
                reason=type(e).__name__, release=release,
            )  # fmt: skip
            raise
        n = count(result)
        release = self._index.run_id if self._index else None
        self.audit.record(
            user=user, action=action, query=asked, results=n, outcome="ok", release=release
        )
        return result

    # --- search -----------------------------------------------------------------------------------

    def search(self, query: SearchQuery | Mapping[str, Any], *, user: str) -> SearchResult:
        """Ranked persons matching ``query``, best first, at most ``search.result_cap``.

        ``query`` may also be a mapping of :class:`SearchQuery`'s fields, validated here (so that
        a malformed one is audited too).

        Raises:
            SearchError: the query is not specific enough.
            InvalidQueryError: a value is malformed.
            QueryError: there is no published release.
        """
        started = time.perf_counter()
        asked = query.asked() if isinstance(query, SearchQuery) else _asked(query)

        def answer() -> SearchResult:
            q = query if isinstance(query, SearchQuery) else SearchQuery.parse(**query)
            return self._search(q)

        result = self._audited("search", user, asked, answer, lambda r: len(r.matches))
        log.debug(
            "search: %d candidates, %d matches in %.1f ms",
            result.candidates,
            len(result.matches),
            (time.perf_counter() - started) * 1000,
        )
        return result

    def _search(self, query: SearchQuery) -> SearchResult:
        std = standardise_query(query, self.config)
        check_specificity(std, sorted(self.config.identifiers))
        index = self.index()
        scored = index.score(std)
        best: dict[str, Scored] = {}
        for s in scored:
            b = best.get(s.person_id)
            if b is None or (s.match_weight, b.record_key) > (b.match_weight, s.record_key):
                best[s.person_id] = s
        m = self.config.model
        kept = sorted(
            (s for s in best.values() if match_probability(s.match_weight) >= m.predict_threshold),
            key=lambda s: (-s.match_weight, s.person_id),
        )
        cap = self.config.search.result_cap
        comparisons = {c.name: c for c in index.model.comparisons}
        matches = []
        for s in kept[:cap]:
            p = match_probability(s.match_weight)
            grade = grade_for(p, m)
            why = [
                Contribution.model_construct(
                    comparison=n, level=comparisons[n].label(g), match_weight=s.weights[n]
                )
                for n, g in s.gammas.items()
            ]
            matches.append(
                Match.model_construct(
                    person=_person({"person_id": s.person_id, **s.person}),
                    match_probability=p,
                    match_weight=s.match_weight,
                    grade=grade,
                    record_key=s.record_key,
                    why=why,
                )
            )
        return SearchResult(
            release=index.run_id,
            candidates=len(scored),
            capped=len(kept) > cap,
            prior_match_weight=index.model.prior_weight,
            matches=matches,
        )

    # --- lookup -----------------------------------------------------------------------------------

    def lookup(
        self,
        *,
        user: str,
        agency: str | None = None,
        source_record_id: str | None = None,
        scheme: str | None = None,
        value: str | None = None,
    ) -> LookupResult:
        """The person(s) holding one agency's record, or one identifier, with every agency's
        record ids and identifiers for them (the IHE PIXm cross-reference).

        Give ``agency`` and ``source_record_id``, or ``scheme`` and ``value``.

        Raises:
            InvalidQueryError: neither pair, both, an unknown agency or scheme, a bad value.
        """
        asked = {
            k: v
            for k, v in (
                ("agency", agency),
                ("source_record_id", source_record_id),
                ("scheme", scheme),
                ("value", value),
            )  # fmt: skip
            if v is not None
        }
        return self._audited(
            "lookup",
            user,
            asked,
            lambda: self._lookup(agency, source_record_id, scheme, value),
            lambda r: len(r.persons),
        )

    def _lookup(
        self, agency: str | None, srid: str | None, scheme: str | None, value: str | None
    ) -> LookupResult:
        by_record = agency is not None or srid is not None
        by_id = scheme is not None or value is not None
        if (
            by_record == by_id
            or (by_record and not (agency and srid))
            or (by_id and not (scheme and value))
        ):
            raise InvalidQueryError(
                ["give either agency and source_record_id, or scheme and value"]
            )
        for name, text in (("source_record_id", srid), ("value", value)):
            if text is not None and (len(text) > 100 or not text.isprintable()):
                raise InvalidQueryError([f"{name}: at most 100 printable characters"])
        index = self.index()
        if agency is not None and srid is not None:
            known = [a.name for a in self.config.agencies]
            if agency not in known:
                raise InvalidQueryError([f"agency: unknown (known: {', '.join(known)})"])
            record_key = f"{agency}:{srid.strip()}"
            ids = index.persons_of(key_text("rk", record_key), "record_key", record_key)
        else:
            assert scheme is not None and value is not None
            std = standardise_identifier(scheme, value, self.config)
            ids = index.persons_of(key_text("id", scheme, std), identifier_column(scheme), std)
        persons = index.persons_by_id(ids)
        by_person: dict[str, list[AgencyRecord]] = {pid: [] for pid in ids}
        for r in index.records_of(ids):
            by_person[r["person_id"]].append(
                AgencyRecord(
                    agency=r["agency"],
                    source_record_id=r["source_record_id"],
                    identifiers={
                        s: r[identifier_column(s)]
                        for s in index.schemes
                        if r.get(identifier_column(s)) is not None
                    },
                )
            )
        return LookupResult(
            release=index.run_id,
            persons=[
                LinkedPerson(person=_person(persons.get(pid, {"person_id": pid})), records=recs)
                for pid, recs in by_person.items()
            ],
        )

    def close(self) -> None:
        self.audit.close()
        if self._index is not None:
            self._index.close()
