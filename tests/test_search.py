"""Search and lookup on a published demo index: standardised queries, ranking, grades, scores equal
to Splink's, specificity, the cap, cross-reference, the audit trail, new releases, injection."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from splink import DuckDBAPI, Linker

from linkage.config import Agency, ProjectConfig, load_config
from linkage.errors import InvalidQueryError, SearchError
from linkage.model import NAME_KEY
from linkage.publish import current_release
from linkage.search import Searcher, grade_for
from linkage.search_query import SearchQuery, StandardQuery, standardise_query
from linkage.search_scoring import compile_model, match_probability
from linkage.standardise.canonical import to_canonical
from linkage.standardise.nicknames import register_nicknames, variants_sql
from tests.conftest import make_demo_project
from tests.test_pipeline import run_steps

# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo project of 1,200 persons run through the pipeline and published (shared with
    tests/test_api.py)."""
    path = make_demo_project(tmp_path_factory.mktemp("search"), persons=1_200, seed=5)
    run_steps(load_config(path))
    return path


@pytest.fixture(scope="module")
def config(published: Path) -> ProjectConfig:
    return load_config(published)


@pytest.fixture(scope="module")
def searcher(config: ProjectConfig) -> Searcher:
    return Searcher(config)


def release_rows(config: ProjectConfig, sql: str, params: list[Any] | None = None) -> list[Any]:
    release = current_release(config.paths.index_dir)
    with duckdb.connect(str(release), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def known(config: ProjectConfig) -> dict[str, Any]:
    """A person with a full record: names, date of birth, postcode and an NHS number."""
    row = release_rows(
        config,
        "SELECT person_id, given_name, family_name, CAST(date_of_birth AS VARCHAR), postcode, "
        "id_nhs_number FROM records WHERE given_name IS NOT NULL AND length(family_name) > 4 "
        "AND date_of_birth IS NOT NULL AND postcode IS NOT NULL AND id_nhs_number IS NOT NULL "
        "ORDER BY record_key LIMIT 1",
    )[0]
    keys = ("person_id", "given_name", "family_name", "date_of_birth", "postcode", "nhs")
    return dict(zip(keys, row, strict=True))


def audit_lines(config: ProjectConfig) -> list[dict[str, Any]]:
    lines = []
    for f in sorted((config.paths.index_dir / "audit").glob("search-*.jsonl")):
        lines += [json.loads(x) for x in f.read_text().splitlines()]
    return lines


# --- standardisation ------------------------------------------------------------------------------


def test_query_values_are_standardised_like_the_records(config: ProjectConfig) -> None:
    q = SearchQuery(
        given_name="Zoë",
        family_name="O'Brien",
        date_of_birth="1984-03-01",
        postcode="sw1a1aa",
        sex="female",
        identifiers={"nhs_number": "943 476 5919"},
    )
    v = standardise_query(q, config).values
    assert (v["given_name"], v["family_name"]) == ("ZOE", "OBRIEN")
    assert (v["postcode"], v["postcode_district"]) == ("SW1A 1AA", "SW1A")
    assert v["date_of_birth"] == date(1984, 3, 1) and v["sex"] == "F"
    assert v["id_nhs_number"] == "9434765919"


_QUERY_AGENCY = Agency.model_validate(
    {
        "name": "query",
        "contract": "/dev/null",
        "source": {"kind": "csv", "path": "/dev/null"},
        "mapping": {
            "source_record_id": "id",
            "given_name": "given_name",
            "family_name": "family_name",
            "date_of_birth": {"column": "date_of_birth", "format": "%Y-%m-%d"},
            "postcode": "postcode",
            "identifiers": {"nhs_number": "nhs_number"},
        },
    }
)
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    given_name=st.one_of(_text, st.sampled_from(["Zoë", "Mr John Paul", "BABY", "Jean-Luc"])),
    family_name=st.one_of(_text, st.sampled_from(["O'Brien", "Smith-Jones", "UNKNOWN"])),
    dob=st.one_of(_text, st.dates().map(str)),
    postcode=st.one_of(_text, st.sampled_from(["sw1a1aa", "ls6 2ab", "ZZ99 3VZ"])),
    nhs=st.one_of(_text, st.sampled_from(["943 476 5919", "0000000000"])),
)
def test_a_query_is_standardised_exactly_as_to_canonical_standardises_an_extract(
    config: ProjectConfig, given_name: str, family_name: str, dob: str, postcode: str, nhs: str
) -> None:
    raw = {
        "id": "1",
        "given_name": given_name,
        "family_name": family_name,
        "date_of_birth": dob,
        "postcode": postcode,
        "nhs_number": nhs,
    }
    frame = pl.LazyFrame({k: [v] for k, v in raw.items()}, schema={k: pl.String for k in raw})
    expected = to_canonical(frame, _QUERY_AGENCY, config.identifiers).collect().row(0, named=True)
    q = SearchQuery.model_construct(
        given_name=given_name or None,
        family_name=family_name or None,
        date_of_birth=dob or None,
        postcode=postcode or None,
        sex=None,
        identifiers={"nhs_number": nhs} if nhs else {},
    )
    try:
        got = standardise_query(q, config).values
    except InvalidQueryError:
        flags = set(expected["quality_flags"])
        # Refused: a value the extract would flag, or an identifier typed as nothing usable
        # (" ", "-"), which an extract reads as missing but a query names as a mistake.
        assert flags & {"dob_unparseable", "dob_placeholder", "dob_out_of_range",
                        "postcode_invalid", "postcode_placeholder", "nhs_number_invalid",
                        "nhs_number_placeholder", "nhs_number_test_range"} or (
            nhs and expected["id_nhs_number"] is None)  # fmt: skip
        return
    for column in ("given_name", "middle_names", "family_name", "date_of_birth", "postcode",
                   "postcode_district", "id_nhs_number"):  # fmt: skip
        assert got[column] == expected[column], column


_ascii = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)


@settings(max_examples=60, deadline=None)
@given(raw=st.one_of(_ascii, st.sampled_from([" smith ", "o'brien", "ls6 2ab", "mr john"])))
def test_the_cache_key_changes_no_standardised_value(raw: str) -> None:
    """Cached values are keyed on upper-cased, stripped ASCII: every standardiser gives the same
    result for that key as for the raw value."""
    from linkage.search_query import _OUTPUTS, _expr, _key

    kinds = [
        ("given", ""), ("family", ""), ("dob", "2026-01-01"), ("postcode", "uk"), ("sex", ""),
        ("id", "nhs_number|nhs_number"), ("id", "ni_number|ni_number"), ("id", "pnc_id|pnc"),
        ("id", "ref|none"),
    ]  # fmt: skip
    for kind, arg in kinds:
        name = f"{kind}:{arg}"
        as_raw, as_key = (
            pl.DataFrame({name: [v]}, schema={name: pl.String}).select(_expr(kind, arg)).item()
            for v in (raw, _key(raw))
        )
        assert [as_raw[o] for o in _OUTPUTS[kind]] == [as_key[o] for o in _OUTPUTS[kind]], kind


# --- search ---------------------------------------------------------------------------------------


def test_a_query_typed_any_way_finds_the_person_first(
    searcher: Searcher, known: dict[str, Any]
) -> None:
    family = known["family_name"]
    q = SearchQuery(
        given_name=f"  {known['given_name'].title()} ",
        family_name=f"{family[:2].lower()}'{family[2:].lower()}",  # an apostrophe, lower case
        date_of_birth=known["date_of_birth"],
        postcode=known["postcode"].replace(" ", "").lower(),
    )
    result = searcher.search(q, user="tester")
    assert result.matches[0].person.person_id == known["person_id"]
    assert result.matches[0].grade == "certain"
    by_number = SearchQuery(identifiers={"nhs_number": " ".join(
        [known["nhs"][:3], known["nhs"][3:6], known["nhs"][6:]]
    )})  # fmt: skip
    assert (
        searcher.search(by_number, user="tester").matches[0].person.person_id
        == (known["person_id"])
    )


def test_a_typo_still_finds_the_person(searcher: Searcher, known: dict[str, Any]) -> None:
    family = known["family_name"]
    typo = family[0] + family[2] + family[1] + family[3:]
    q = SearchQuery(given_name=known["given_name"], family_name=typo,
                    date_of_birth=known["date_of_birth"])  # fmt: skip
    assert known["person_id"] in [m.person.person_id for m in searcher.search(q, user="t").matches]


def test_persons_are_ranked_by_their_best_record_and_listed_once(
    searcher: Searcher, config: ProjectConfig
) -> None:
    # a household: family name and postcode shared by several persons
    family, postcode = release_rows(
        config,
        "SELECT family_name, postcode FROM records WHERE postcode IS NOT NULL "
        "GROUP BY ALL HAVING count(DISTINCT person_id) >= 2 ORDER BY ALL LIMIT 1",
    )[0]
    given = release_rows(
        config, "SELECT min(given_name) FROM records WHERE family_name = ? AND postcode = ?",
        [family, postcode],
    )[0][0]  # fmt: skip
    low = config.model_copy(
        update={"model": config.model.model_copy(update={"predict_threshold": 1e-12})}
    )
    result = Searcher(low).search(
        SearchQuery(given_name=given, family_name=family, postcode=postcode), user="t"
    )
    ids = [m.person.person_id for m in result.matches]
    weights = [m.match_weight for m in result.matches]
    assert len(ids) >= 2 and len(set(ids)) == len(ids)
    assert weights == sorted(weights, reverse=True)
    assert result.matches[0].person.given_name == given


def test_grades_follow_the_model_thresholds(config: ProjectConfig) -> None:
    m = config.model
    assert grade_for(m.certain_threshold, m) == "certain"
    assert grade_for(m.certain_threshold - 1e-9, m) == "probable"
    assert grade_for(m.cluster_threshold, m) == "probable"
    assert grade_for(m.cluster_threshold - 1e-9, m) == "possible"


def test_no_match_below_the_predict_threshold_is_returned(
    searcher: Searcher, config: ProjectConfig, known: dict[str, Any]
) -> None:
    q = SearchQuery(family_name=known["family_name"], date_of_birth=known["date_of_birth"])
    for m in searcher.search(q, user="t").matches:
        assert m.match_probability >= config.model.predict_threshold
        assert m.grade == grade_for(m.match_probability, config.model)
        assert m.match_probability == pytest.approx(match_probability(m.match_weight))


def test_the_why_adds_up_to_the_match_weight(searcher: Searcher, known: dict[str, Any]) -> None:
    q = SearchQuery(family_name=known["family_name"], date_of_birth=known["date_of_birth"])
    result = searcher.search(q, user="t")
    m = result.matches[0]
    assert {w.comparison for w in m.why} >= {"name", "date_of_birth"}
    total = result.prior_match_weight + sum(w.match_weight for w in m.why)
    assert total == pytest.approx(m.match_weight, abs=1e-9)
    dob = next(w for w in m.why if w.comparison == "date_of_birth")
    assert dob.level == "Exact match on date_of_birth" and dob.match_weight > 0


# --- the same scores as Splink --------------------------------------------------------------------


def _record_query(row: dict[str, Any]) -> StandardQuery:
    return StandardQuery(values=row)


def test_scores_equal_the_nightly_runs_splink_predict_for_every_published_link(
    searcher: Searcher, config: ProjectConfig
) -> None:
    """Each pair the nightly run scored (``links``, written by Splink's ``predict``), scored
    again by the search service with the left record as the query."""
    index = searcher.index()
    release = current_release(config.paths.index_dir)
    with duckdb.connect(str(release), read_only=True) as con:
        links = con.sql(
            "SELECT record_key_l, record_key_r, match_weight, * LIKE 'gamma_%' FROM links"
        ).fetchall()
        gamma_cols = [c for c in con.sql("SELECT * LIKE 'gamma_%' FROM links").columns]
        rel = con.sql(f"SELECT record_key, {', '.join(index.columns)} FROM records")
        records = {r[0]: dict(zip(rel.columns[1:], r[1:], strict=True)) for r in rel.fetchall()}
    assert len(links) > 100
    worst = 0.0
    for key_l, key_r, weight, *gammas in links:
        (scored,) = index.score(_record_query(records[key_l]), record_keys=[key_r])
        worst = max(worst, abs(scored.match_weight - weight))
        assert [scored.gammas[c.removeprefix("gamma_")] for c in gamma_cols] == gammas
    assert worst < 1e-6


def _splink_linker(
    config: ProjectConfig, model_path: Path
) -> tuple[duckdb.DuckDBPyConnection, Any, DuckDBAPI]:
    release = current_release(config.paths.index_dir)
    con = duckdb.connect()
    con.execute(f"ATTACH '{release}' AS rel (READ_ONLY)")
    nick = register_nicknames(con)
    con.execute(  # the blocking key is not scored, but Splink keeps what its rules read
        "CREATE TABLE records AS SELECT r.* EXCLUDE (person_id), "
        f"{variants_sql('r.given_name')} AS given_name_variants, NULL::VARCHAR AS {NAME_KEY} "
        f"FROM rel.records r LEFT JOIN {nick} n ON n.nickname = r.given_name"
    )
    con.execute("DETACH rel")
    db = DuckDBAPI(connection=con)
    linker = Linker(
        db.register("records", dataset_display_name="records"), str(model_path),
        log_level=logging.WARNING,
    )  # fmt: skip
    for column in ("family_name", "given_name"):
        linker.table_management.compute_tf_table(column)
    return con, linker, db


def test_search_scores_equal_splink_score_pairs(
    searcher: Searcher, config: ProjectConfig, known: dict[str, Any]
) -> None:
    """Queries (no address or middle name, as a case worker types them) scored by the search
    service and by Splink's ``score_pairs`` against the same candidates."""
    index = searcher.index()
    con, linker, db = _splink_linker(
        config, config.model.dir / index.model_version / "splink_model.json"
    )
    queries = [
        SearchQuery(given_name=known["given_name"], family_name=known["family_name"],
                    date_of_birth=known["date_of_birth"], postcode=known["postcode"]),
        SearchQuery(family_name=known["family_name"], date_of_birth=known["date_of_birth"],
                    sex="M"),
        SearchQuery(given_name="Bill", family_name=known["family_name"],
                    postcode=known["postcode"]),
        SearchQuery(identifiers={"nhs_number": known["nhs"]}),
    ]  # fmt: skip
    compared = 0
    for i, q in enumerate(queries):
        std = standardise_query(q, config)
        scored = index.score(std)
        if not scored:
            continue
        v = std.values
        con.execute("CREATE OR REPLACE TABLE q AS SELECT * FROM records LIMIT 0")
        cols = ["record_key", "agency", *index.columns, "given_name_variants"]
        variants = None if v["given_name"] is None else sorted(
            {v["given_name"], *index.nicknames.get(v["given_name"], [])}
        )  # fmt: skip
        con.execute(
            f"INSERT INTO q ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [f"query:{i}", "query", *(v[c] for c in index.columns), variants],
        )
        keys = [s.record_key for s in scored]
        con.execute(
            "CREATE OR REPLACE TABLE cand AS "
            "SELECT * FROM records WHERE list_contains(?, record_key)",
            [keys],
        )
        out = linker.inference.score_pairs(
            db.register("q", dataset_display_name=f"q{i}"),
            db.register("cand", dataset_display_name=f"cand{i}"),
        )
        theirs = dict(
            con.sql(f"SELECT record_key_r, match_weight FROM {out.physical_name}").fetchall()
        )
        for s in scored:
            assert s.match_weight == pytest.approx(theirs[s.record_key], abs=1e-6)
            compared += 1
    assert compared >= 4


def test_the_compiled_model_reads_every_level_and_its_weight(config: ProjectConfig) -> None:
    model_dir = sorted(p for p in config.model.dir.iterdir() if p.is_dir())[-1]
    model = compile_model(model_dir / "splink_model.json")
    saved = json.loads((model_dir / "splink_model.json").read_text())
    assert [c.name for c in model.comparisons] == [
        c["output_column_name"] for c in saved["comparisons"]
    ]
    dob = next(c for c in model.comparisons if c.name == "date_of_birth")
    exact = next(lv for lv in dob.levels if lv.label == "Exact match on date_of_birth")
    raw = next(
        lv
        for c in saved["comparisons"]
        if c["output_column_name"] == "date_of_birth"
        for lv in c["comparison_levels"]
        if lv["label_for_charts"] == "Exact match on date_of_birth"
    )
    import math

    assert exact.match_weight == pytest.approx(
        math.log2(raw["m_probability"] / raw["u_probability"])
    )
    assert set(model.tf_columns) == {"family_name", "given_name"}


# --- safety ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"family_name": "Smith"}, "date_of_birth"),
        ({"given_name": "John", "family_name": "Smith"}, "postcode"),
        ({"given_name": "John", "date_of_birth": "1980-01-01"}, "family_name"),
        ({"postcode": "LS6 2AB", "sex": "M"}, "family_name"),
        ({"family_name": "Unknown", "date_of_birth": "1980-01-01"}, "family_name"),
        ({}, "family_name"),
    ],
)
def test_a_query_that_is_not_specific_enough_is_refused_saying_what_would_do(
    searcher: Searcher, fields: dict[str, str], missing: str
) -> None:
    with pytest.raises(SearchError) as e:
        searcher.search(SearchQuery(**fields), user="t")
    msg = str(e.value)
    assert e.value.reason == "not_specific_enough" and e.value.exit_code == 64
    assert f"missing here: {missing}" in msg or f"+ {missing}" in msg
    assert "family_name + date_of_birth" in msg and "given_name + family_name + postcode" in msg
    for value in fields.values():
        assert value not in msg  # names the fields, never the values


@pytest.mark.parametrize(
    "fields",
    [
        {"family_name": "Smith", "date_of_birth": "1980-02-30"},
        {"family_name": "Smith", "date_of_birth": "01/02/1980"},
        {"family_name": "Smith", "date_of_birth": "2999-01-01"},
        {"given_name": "A", "family_name": "Smith", "postcode": "not a postcode"},
        {"identifiers": {"nhs_number": "1234567890"}},
        {"identifiers": {"passport": "123"}},
        {"family_name": "Smith", "date_of_birth": "1980-01-01", "sex": "Q"},
    ],
)
def test_a_malformed_value_is_an_invalid_query(searcher: Searcher, fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidQueryError) as e:
        searcher.search(fields, user="t")
    assert e.value.exit_code == 65 and e.value.problems


def test_results_are_capped(config: ProjectConfig) -> None:
    family, postcode, given = release_rows(
        config,
        "SELECT family_name, postcode, min(given_name) FROM records WHERE postcode IS NOT NULL "
        "GROUP BY ALL HAVING count(DISTINCT person_id) >= 3 ORDER BY ALL LIMIT 1",
    )[0]
    model = config.model.model_copy(update={"predict_threshold": 1e-12})
    capped = config.model_copy(
        update={"model": model, "search": config.search.model_copy(update={"result_cap": 2})}
    )
    result = Searcher(capped).search(
        SearchQuery(given_name=given, family_name=family, postcode=postcode), user="t"
    )
    assert len(result.matches) == 2 and result.capped


@pytest.mark.parametrize(
    "evil",
    [
        "'; DROP TABLE search_records; --",
        "Robert'); DROP TABLE persons;--",
        '" OR 1=1 --',
        "x' UNION SELECT * FROM search_records --",
        "\x00\x1f\\",
        "$1 ? %s {0}",
        "read_text('/etc/passwd')",
    ],
)
def test_sql_injection_strings_are_only_values(searcher: Searcher, evil: str) -> None:
    before = (searcher.index().records, searcher.index().persons)
    for fields in (
        {"given_name": evil, "family_name": evil, "postcode": "LS6 2AB"},
        {"family_name": evil, "date_of_birth": "1980-01-01"},
        {"identifiers": {"nhs_number": evil}},
        {"identifiers": {evil: "1"}},
    ):
        with contextlib.suppress(SearchError):
            searcher.search(fields, user=evil)
    for kwargs in (
        {"agency": "police", "source_record_id": evil},
        {"scheme": "pnc_id", "value": evil},
    ):
        with contextlib.suppress(SearchError):
            assert searcher.lookup(user="t", **kwargs).persons == []
    index = searcher.index()
    assert (index._count("search_records"), index._count("search_persons")) == before


def test_concurrent_searches_give_the_answers_serial_ones_do(
    searcher: Searcher, config: ProjectConfig
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rows = release_rows(
        config,
        "SELECT given_name, family_name, CAST(date_of_birth AS VARCHAR) FROM records "
        "WHERE given_name IS NOT NULL AND family_name IS NOT NULL AND date_of_birth IS NOT NULL "
        "ORDER BY record_key LIMIT 60",
    )
    queries = [{"given_name": g.lower(), "family_name": f, "date_of_birth": d} for g, f, d in rows]

    def ids(q: dict[str, str]) -> list[str]:
        return [m.person.person_id for m in searcher.search(q, user="t").matches]

    serial = [ids(q) for q in queries]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ids, queries)) == serial


# --- lookup ---------------------------------------------------------------------------------------


def test_lookup_gives_every_agencys_records_and_identifiers(
    searcher: Searcher, config: ProjectConfig
) -> None:
    person_id, agency, srid = release_rows(
        config,
        "SELECT r.person_id, r.agency, r.source_record_id FROM records r JOIN persons p "
        "USING (person_id) WHERE p.agency_count >= 3 ORDER BY r.record_key LIMIT 1",
    )[0]
    expected = release_rows(
        config,
        "SELECT agency, source_record_id FROM records WHERE person_id = ? ORDER BY ALL",
        [person_id],
    )
    result = searcher.lookup(agency=agency, source_record_id=srid, user="tester")
    (person,) = result.persons
    assert person.person.person_id == person_id
    assert sorted((r.agency, r.source_record_id) for r in person.records) == expected
    assert len({r.agency for r in person.records}) >= 3
    numbers = [(s, v) for r in person.records for s, v in r.identifiers.items()]
    assert numbers
    scheme, value = numbers[0]
    again = searcher.lookup(scheme=scheme, value=value, user="tester")
    assert person_id in [p.person.person_id for p in again.persons]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"agency": "police"},
        {"agency": "nope", "source_record_id": "1"},
        {"scheme": "nhs_number", "value": "123"},
        {"scheme": "passport", "value": "123"},
        {"agency": "police", "source_record_id": "1", "scheme": "nhs_number", "value": "1"},
        {"agency": "police", "source_record_id": "x" * 500},
    ],
)
def test_a_bad_lookup_is_an_invalid_query(searcher: Searcher, kwargs: dict[str, str]) -> None:
    with pytest.raises(InvalidQueryError):
        searcher.lookup(user="t", **kwargs)


def test_an_unknown_record_finds_no_one(searcher: Searcher) -> None:
    assert searcher.lookup(agency="police", source_record_id="no-such", user="t").persons == []


# --- audit ----------------------------------------------------------------------------------------


def test_every_search_and_lookup_is_audited_apart_from_ordinary_logs(
    searcher: Searcher,
    config: ProjectConfig,
    known: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    marker = "Auditwatch"
    q = {"family_name": marker, "date_of_birth": known["date_of_birth"]}
    searcher.search(q, user="alice")
    with pytest.raises(SearchError):
        searcher.search({"family_name": marker}, user="bob")
    with pytest.raises(InvalidQueryError):
        searcher.search({"family_name": marker, "date_of_birth": "1980-13-01"}, user="carol")
    found = searcher.search(
        {"given_name": known["given_name"], "family_name": known["family_name"],
         "date_of_birth": known["date_of_birth"]}, user="dave",
    )  # fmt: skip
    searcher.lookup(scheme="nhs_number", value=known["nhs"], user="erin")
    with pytest.raises(SearchError):
        searcher.search(q, user=" ")

    lines = audit_lines(config)
    by_user = {line["user"]: line for line in lines}
    assert by_user["alice"]["query"] == q and by_user["alice"]["outcome"] == "ok"
    assert by_user["alice"]["action"] == "search" and by_user["alice"]["results"] == 0
    assert by_user["bob"]["outcome"] == "refused"
    assert by_user["bob"]["reason"] == "not_specific_enough"
    assert by_user["carol"]["reason"] == "invalid_input"
    assert by_user["dave"]["results"] == len(found.matches) >= 1
    assert (
        by_user["erin"]["action"] == "lookup" and by_user["erin"]["query"]["value"] == known["nhs"]
    )
    assert by_user[" "]["reason"] == "no_user"
    for line in lines:
        assert line["time"].endswith("+00:00") and line["release"]
    audit_dir = config.paths.index_dir / "audit"
    assert stat.S_IMODE(audit_dir.stat().st_mode) == 0o700
    for f in audit_dir.iterdir():
        assert f.name.startswith("search-") and stat.S_IMODE(f.stat().st_mode) == 0o600
    # ordinary logs: counts and timings, never a value searched for
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert marker not in text and known["family_name"] not in text and known["nhs"] not in text


# --- releases -------------------------------------------------------------------------------------


def _open_files() -> set[str]:
    fds = Path("/proc/self/fd")
    out = set()
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            out.add(os.readlink(fd))
    return out


def test_a_new_release_is_picked_up_on_the_next_search_and_the_publisher_is_never_blocked(
    tmp_path: Path,
) -> None:
    path = make_demo_project(tmp_path, persons=300, seed=9)
    cfg = load_config(path)
    run_steps(cfg)
    searcher = Searcher(cfg)
    first = searcher.index().release
    assert str(first) not in _open_files()  # loaded into memory: no handle on the release
    family, dob = release_rows(
        cfg, "SELECT family_name, CAST(date_of_birth AS VARCHAR) FROM records "
        "WHERE family_name IS NOT NULL AND date_of_birth IS NOT NULL ORDER BY record_key LIMIT 1",
    )[0]  # fmt: skip
    q = {"family_name": family, "date_of_birth": dob}
    assert searcher.search(q, user="t").release == first.stem

    run_steps(cfg)  # the real publisher, while the searcher is open
    second = current_release(cfg.paths.index_dir)
    assert second != first
    result = searcher.search(q, user="t")
    assert result.release == second.stem and result.matches
    assert searcher.index().release == second


def test_a_searcher_without_a_release_says_to_run_first(tmp_path: Path) -> None:
    from linkage.errors import QueryError

    cfg = load_config(make_demo_project(tmp_path, persons=50, seed=1))
    with pytest.raises(QueryError, match="linkage run"):
        Searcher(cfg)


def test_query_fields_must_be_valid_unicode_and_not_too_long() -> None:
    with pytest.raises(InvalidQueryError, match="family_name"):
        SearchQuery.parse(family_name="\ud800", date_of_birth="1980-01-01")
    with pytest.raises(InvalidQueryError, match="at most 100"):
        SearchQuery.parse(family_name="x" * 101)
    assert SearchQuery.parse(identifiers=["nhs_number=943 476 5919"]).identifiers == {
        "nhs_number": "943 476 5919"
    }


# --- command line ---------------------------------------------------------------------------------


def test_linkage_search_and_lookup_print_tables_and_json(
    published: Path, known: dict[str, Any]
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    runner = CliRunner()
    args = ["search", "--config", str(published), "--family-name", known["family_name"],
            "--dob", known["date_of_birth"], "--user", "cli.tester"]  # fmt: skip
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    assert known["person_id"] in table.output and "why" in table.output
    as_json = runner.invoke(app, [*args, "--format", "json"])
    assert json.loads(as_json.output)["matches"][0]["person"]["person_id"] == known["person_id"]
    by_number = runner.invoke(
        app, ["lookup", "--config", str(published), "--scheme", "nhs_number",
              "--value", known["nhs"], "--user", "cli.tester", "-f", "json"],
    )  # fmt: skip
    assert by_number.exit_code == 0, by_number.output
    assert json.loads(by_number.output)["persons"][0]["person"]["person_id"] == known["person_id"]
    refused = runner.invoke(app, ["search", "--config", str(published), "--family-name", "x"])
    assert isinstance(refused.exception, SearchError) and refused.exception.exit_code == 64


def test_the_command_exits_64_when_refused_and_65_on_a_bad_value(published: Path) -> None:
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("linkage")
    base = [str(exe), "search", "--config", str(published), "--family-name", "Smith"]
    refused = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 64 and "not specific enough" in refused.stderr
    bad = subprocess.run(
        [*base, "--dob", "31/12/1980"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 65 and "date_of_birth" in bad.stderr
