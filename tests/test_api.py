"""The search API: who is asking, 4xx for bad input (never 5xx), offline pages, and the case
workers' search page in a real browser with the network cut off."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkage.api import create_app
from linkage.config import ProjectConfig, load_config
from linkage.publish import current_release
from linkage.reports.offline import find_external_urls
from linkage.search import Searcher
from tests.browser import BROWSER_SKIP_REASON, offline_browser
from tests.test_search import published  # noqa: F401  (the shared published demo project)

USER = {"X-User": "case.worker"}


@pytest.fixture(scope="module")
def config(published: Path) -> ProjectConfig:  # noqa: F811
    return load_config(published)


@pytest.fixture(scope="module")
def client(config: ProjectConfig) -> TestClient:
    return TestClient(create_app(config, searcher=Searcher(config)))


@pytest.fixture(scope="module")
def person(config: ProjectConfig) -> dict[str, Any]:
    """A known person with a full record (from the published index)."""
    release = current_release(config.paths.index_dir)
    with duckdb.connect(str(release), read_only=True) as con:
        row = con.sql(
            "SELECT person_id, given_name, family_name, CAST(date_of_birth AS VARCHAR), postcode, "
            "agency, source_record_id FROM records WHERE given_name IS NOT NULL "
            "AND family_name IS NOT NULL AND date_of_birth IS NOT NULL AND postcode IS NOT NULL "
            "ORDER BY record_key DESC LIMIT 1"
        ).fetchall()[0]
    keys = ("person_id", "given_name", "family_name", "date_of_birth", "postcode", "agency",
            "source_record_id")  # fmt: skip
    return dict(zip(keys, row, strict=True))


# --- who is asking --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/search?family_name=Smith&date_of_birth=1980-01-01"),
        ("post", "/search"),
        ("get", "/lookup?scheme=nhs_number&value=9434765919"),
        ("get", "/"),
    ],
)
@pytest.mark.parametrize("header", [None, "", "   "])
def test_without_x_user_the_answer_is_401(
    client: TestClient, method: str, url: str, header: str | None
) -> None:
    headers = {} if header is None else {"X-User": header}
    kwargs: dict[str, Any] = {"json": {"family_name": "Smith"}} if method == "post" else {}
    r = client.request(method, url, headers=headers, **kwargs)
    assert r.status_code == 401
    assert "X-User" in r.json()["detail"]


def test_health_needs_no_user_and_names_the_release(
    client: TestClient, config: ProjectConfig
) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["release"] == current_release(config.paths.index_dir).stem
    assert body["records"] > 0 and body["persons"] > 0


# --- answers --------------------------------------------------------------------------------------


def test_search_by_query_parameters_and_by_json_body_agree(
    client: TestClient, person: dict[str, Any]
) -> None:
    params = {
        "given_name": person["given_name"].lower(),
        "family_name": person["family_name"].lower(),
        "date_of_birth": person["date_of_birth"],
        "postcode": person["postcode"].replace(" ", "").lower(),
    }
    by_get = client.get("/search", params=params, headers=USER)
    by_post = client.post("/search", json=params, headers=USER)
    assert by_get.status_code == by_post.status_code == 200
    assert by_get.json()["matches"] == by_post.json()["matches"]
    top = by_get.json()["matches"][0]
    assert top["person"]["person_id"] == person["person_id"]
    assert top["grade"] in ("certain", "probable", "possible")
    assert {"comparison", "level", "match_weight"} <= set(top["why"][0])
    assert by_get.headers["cache-control"] == "no-store"


def test_lookup_by_an_agencys_record(client: TestClient, person: dict[str, Any]) -> None:
    r = client.get(
        "/lookup",
        params={"agency": person["agency"], "source_record_id": person["source_record_id"]},
        headers=USER,
    )
    assert r.status_code == 200
    (found,) = r.json()["persons"]
    assert found["person"]["person_id"] == person["person_id"]
    assert (person["agency"], person["source_record_id"]) in {
        (rec["agency"], rec["source_record_id"]) for rec in found["records"]
    }


def test_identifiers_in_a_get_are_scheme_equals_value(client: TestClient) -> None:
    r = client.get("/search", params=[("id", "nhs_number=943 476 5919")], headers=USER)
    assert r.status_code == 200 and "matches" in r.json()
    bad = client.get("/search", params=[("id", "9434765919")], headers=USER)
    assert bad.status_code == 422 and "scheme=value" in bad.json()["message"]


# --- errors ---------------------------------------------------------------------------------------


def test_a_query_not_specific_enough_is_400_saying_what_would_do(client: TestClient) -> None:
    r = client.get("/search", params={"family_name": "Smith"}, headers=USER)
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "not_specific_enough"
    assert "family_name + date_of_birth" in body["message"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"family_name": "Smith", "date_of_birth": "1980-02-30"}, "date_of_birth"),
        ({"family_name": "Smith", "date_of_birth": "yesterday"}, "date_of_birth"),
        ({"family_name": "Smith", "date_of_birth": "1980-01-01", "sex": "Q"}, "sex"),
        ({"given_name": "A", "family_name": "B", "postcode": "XX"}, "postcode"),
        ({"family_name": "S" * 1000, "date_of_birth": "1980-01-01"}, "family_name"),
        ({"id": "passport=123"}, "identifiers"),
        ({"id": "nhs_number=1234567890"}, "identifiers.nhs_number"),
    ],
)
def test_a_malformed_value_is_422_naming_the_field(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    r = client.get("/search", params=params, headers=USER)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_input"
    assert any(p.startswith(field) for p in body["problems"])


def test_a_malformed_json_body_is_422_and_audited(
    client: TestClient, config: ProjectConfig
) -> None:
    for body in (
        b"{not json",
        b'{"family_name": 5}',
        b'{"surname": "x"}',
        b"[]",
        b'{"family_name": NaN}',
        b"\xff\xfe",
    ):
        r = client.post(
            "/search", content=body, headers={**USER, "content-type": "application/json"}
        )
        assert r.status_code == 422, body
        assert r.json()["error"] == "invalid_input"
    r = client.post(
        "/search", content=b'{"family_name": "\\ud800", "date_of_birth": "1980-01-01"}',
        headers={**USER, "content-type": "application/json"},
    )  # fmt: skip
    assert r.status_code == 422 and "Unicode" in r.json()["message"]
    audit = config.paths.index_dir / "audit"
    lines = [json.loads(x) for f in audit.glob("*.jsonl") for x in f.read_text().splitlines()]
    refused = [x for x in lines if x["user"] == USER["X-User"] and x["reason"] == "invalid_input"]
    assert len(refused) >= 5


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"agency": "police"},
        {"agency": "no_such_agency", "source_record_id": "1"},
        {"scheme": "passport", "value": "1"},
        {"scheme": "nhs_number", "value": "not a number"},
        {"agency": "police", "source_record_id": "\x00\x01"},
    ],
)
def test_a_bad_lookup_is_422(client: TestClient, params: dict[str, str]) -> None:
    r = client.get("/lookup", params=params, headers=USER)
    assert r.status_code == 422 and r.json()["error"] == "invalid_input"


GARBAGE = [
    "'; DROP TABLE search_records; --",
    '" OR 1=1 --',
    "Robert'); DROP TABLE persons;--",
    "read_text('/etc/passwd')",
    "\x00",
    "\u202e\u200b\ufeff",
    "𝔍𝔬𝔥𝔫 🙂 ﷽",
    "Zoë\u0301\u0301\u0301",
    "x" * 20_000,
    "1980-13-45",
    "0000-00-00",
    "9999-12-31",
    "-1",
    "%s %d {0} $1 ?",
    "<script>alert(1)</script>",
    "../../etc/passwd",
]


@pytest.mark.parametrize("value", GARBAGE)
def test_garbage_in_any_field_is_never_a_5xx(client: TestClient, value: str) -> None:
    for field in ("given_name", "family_name", "date_of_birth", "postcode", "sex"):
        params = {"family_name": "Smith", "date_of_birth": "1980-01-01", field: value}
        for r in (
            client.get("/search", params=params, headers=USER),
            client.post("/search", json=params, headers=USER),
        ):
            assert r.status_code < 500, (field, r.text[:200])
            assert r.status_code in (200, 400, 422)
    for params in (
        {"id": f"nhs_number={value}"},
        {"id": f"{value}=1"},
    ):
        assert client.get("/search", params=params, headers=USER).status_code in (200, 400, 422)
    for params in (
        {"agency": "police", "source_record_id": value},
        {"scheme": "ni_number", "value": value},
        {"agency": value, "source_record_id": "1"},
    ):
        assert client.get("/lookup", params=params, headers=USER).status_code in (200, 422)


def test_a_huge_body_is_422(client: TestClient) -> None:
    body = {"family_name": "x" * 1_000_000, "date_of_birth": "1980-01-01"}
    r = client.post("/search", json=body, headers=USER)
    assert r.status_code == 422 and "at most 100" in r.json()["message"]


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
_fields = st.sampled_from(
    ["given_name", "family_name", "date_of_birth", "postcode", "sex", "identifiers", "other"]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.dictionaries(_fields, _json, max_size=6) | _json)
def test_any_json_body_gets_a_4xx_or_an_answer(client: TestClient, body: Any) -> None:
    r = client.post("/search", json=body, headers=USER)
    assert r.status_code in (200, 400, 422), r.text[:300]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(params=st.dictionaries(_fields | st.just("id"), st.text(max_size=60), max_size=6))
def test_any_query_string_gets_a_4xx_or_an_answer(
    client: TestClient, params: dict[str, str]
) -> None:
    r = client.get("/search", params=params, headers=USER)
    assert r.status_code in (200, 400, 422), r.text[:300]


def test_nothing_published_is_503_not_500(tmp_path: Path, config: ProjectConfig) -> None:
    searcher = Searcher(config)
    app = create_app(config, searcher=searcher)
    moved = tmp_path / "elsewhere"
    (config.paths.index_dir / "current.duckdb").rename(moved)
    try:
        r = TestClient(app).get("/search", params={"id": "nhs_number=9434765919"}, headers=USER)
        assert r.status_code == 503 and "linkage run" in r.json()["message"]
    finally:
        moved.rename(config.paths.index_dir / "current.duckdb")


# --- pages served locally -------------------------------------------------------------------------


def test_fastapis_cdn_pages_are_off_and_docs_are_served_here(
    client: TestClient, tmp_path: Path
) -> None:
    assert client.get("/redoc").status_code == 404
    spec = client.get("/openapi.json").json()
    assert {"/search", "/lookup", "/health"} <= set(spec["paths"])
    docs = client.get("/docs")
    assert docs.status_code == 200
    for text in ("/search", "/lookup", "X-User", "SearchQuery", "curl"):
        assert text in docs.text
    page = client.get("/", headers=USER)
    assert page.status_code == 200 and "case.worker" in page.text
    for name, html in (("docs.html", docs.text), ("search.html", page.text)):
        (tmp_path / name).write_text(html)
    assert find_external_urls(tmp_path, include_links=True) == []
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp


def test_the_page_escapes_the_user_name(client: TestClient) -> None:
    page = client.get("/", headers={"X-User": '<img src=x onerror="alert(1)">'})
    assert page.status_code == 200 and "<img src=x" not in page.text


# --- in a real browser ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(config: ProjectConfig) -> Iterator[str]:
    """The API under uvicorn on 127.0.0.1, in a thread."""
    port = _free_port()
    app = create_app(config, searcher=Searcher(config))
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.mark.skipif(BROWSER_SKIP_REASON is not None, reason=BROWSER_SKIP_REASON or "")
def test_a_case_worker_finds_a_person_with_the_search_page(
    server: str, person: dict[str, Any], tmp_path: Path
) -> None:
    with offline_browser() as browser:
        browser.context.set_extra_http_headers({"X-User": "case.worker"})
        report = browser.open(server + "/", screenshot=tmp_path / "page.png")
        assert report.blocked == [] and report.console_errors == [] and report.page_errors == []

        page = browser.context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server + "/")
        page.fill("#given_name", person["given_name"].title())
        page.fill("#family_name", person["family_name"].lower())
        page.fill("#date_of_birth", person["date_of_birth"])
        page.fill("#postcode", person["postcode"].lower())
        page.click("#search-button")
        row = page.wait_for_selector(f'#results tr[data-person-id="{person["person_id"]}"]')
        assert row is not None
        text = row.inner_text()
        assert person["person_id"] in text and "date_of_birth" in text
        assert any(g in text for g in ("certain", "probable", "possible"))

        page.select_option("#lookup_agency", person["agency"])
        page.fill("#lookup_record", person["source_record_id"])
        page.click("#lookup-button")
        page.wait_for_selector("#lookup-results:not(.hidden) tbody tr")
        assert person["source_record_id"] in page.inner_text("#lookup-results")
        page.screenshot(path=str(tmp_path / "results.png"), full_page=True)

        page.fill("#postcode", "")
        page.fill("#date_of_birth", "")
        page.click("#search-button")
        page.wait_for_selector("#search-message.error")
        assert "not specific enough" in page.inner_text("#search-message")
        page.close()
        assert errors == [] and browser.blocked == []
