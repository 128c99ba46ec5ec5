"""The per-run data-quality report: content, small-number suppression, escaping, offline use."""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkage import runlog
from linkage.reports.offline import find_external_urls
from linkage.reports.quality import TREND_RUNS, Suppression, render_quality_report
from linkage.runlog import ExtractSummary, GateOutcome, RunRecord
from tests.browser import BROWSER_SKIP_REASON, offline_browser

SCREENSHOT = Path("/tmp/quality-report.png")

# --- fixtures: hand-built run records with known books -------------------------------------------


def _gp(**changes: object) -> ExtractSummary:
    e = ExtractSummary(
        agency="gp_practices",
        source="gp_practices.csv",
        sha256="3f1a9c0b7d2e4f6a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a",
        delivered=12_480,
        accepted=12_310,
        quarantined=152,
        blank_lines=3,  # suppressed: delivered must be withheld
        duplicates=15,
        standardised=12_310,
        flags={
            "nhs_number_invalid": 41,
            "nhs_number_placeholder": 7,
            "given_name_placeholder": 12,
            "dob_placeholder": 25,
            "address_placeholder": 88,
            "postcode_invalid": 130,
            "postcode_placeholder": 4,
        },
        quarantine_reasons={
            "required:nhs_number": 60,
            "pattern:postcode": 80,
            "date_format:date_of_birth": 15,
            "allowed_values:sex": 4,
        },
        completeness={
            "given_name": 0.999,
            "family_name": 1.0,
            "date_of_birth": 0.998,
            "postcode": 0.9894,
            "id_nhs_number": 0.9961,
            "address": 0.9929,
            "sex": 0.9995,  # 6 of 12,310 lack a value: banded
        },
    )
    return replace(e, **changes)  # type: ignore[arg-type]


def _hospital(**changes: object) -> ExtractSummary:
    e = ExtractSummary(
        agency="hospital_episodes",
        source="hes_extract.parquet",
        sha256="9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b",
        delivered=48_200,
        accepted=47_950,
        quarantined=230,
        blank_lines=0,
        duplicates=20,
        standardised=47_950,
        flags={
            "nhs_number_invalid": 310,
            "nhs_number_test_range": 12,
            "dob_out_of_range": 9,
            "postcode_invalid": 402,
        },
        quarantine_reasons={"required:nhs_number": 190, "pattern:postcode": 40},
        completeness={
            "given_name": 0.997,
            "family_name": 0.9996,
            "date_of_birth": 0.9999,  # 5 of 47,950 lack a value: banded
            "postcode": 0.9812,
            "id_nhs_number": 0.9935,
            "address": 0.76,
            "sex": 1.0,
        },
    )
    return replace(e, **changes)  # type: ignore[arg-type]


def _social(**changes: object) -> ExtractSummary:
    e = ExtractSummary(
        agency="social_care",
        source="social_care.csv",
        sha256=None,
        delivered=3_120,
        accepted=3_101,
        quarantined=19,
        blank_lines=0,
        duplicates=0,
        standardised=3_101,
        flags={"postcode_invalid": 0, "given_name_placeholder": 31},
        quarantine_reasons={"required:nhs_number": 19},
        completeness={"given_name": 0.99, "family_name": 1.0, "date_of_birth": 0.0},
    )
    return replace(e, **changes)  # type: ignore[arg-type]


def _gates(*failed: GateOutcome) -> tuple[GateOutcome, ...]:
    passed = tuple(
        GateOutcome(gate, agency, True, detail)
        for agency in ("gp_practices", "hospital_episodes", "social_care")
        for gate, detail in (
            ("file_rejected", "delivery accepted"),
            ("quarantine_rate", "0.40% of rows quarantined (limit 0.50% from the contract)"),
            ("volume", "5 earlier runs: too few to judge volume"),
        )
    )
    replaced = {(g.gate, g.agency) for g in failed}
    return tuple(g for g in passed if (g.gate, g.agency) not in replaced) + failed


def _run(run_id: str, day: int, **changes: object) -> RunRecord:
    r = RunRecord(
        run_id=run_id,
        project="mpi-demo",
        started_at=f"2024-05-{day:02d}T02:00:00+00:00",
        finished_at=f"2024-05-{day:02d}T02:17:41+00:00",
        status="published",
        config_path="config/project.yaml",
        model_version="model-2024-04-30-a1b2c3",
        trained_this_run=False,
        cluster_threshold=0.92,
        extracts=(_gp(), _hospital(), _social()),
        gates=_gates(),
        records=63_361,
        persons=41_207,
        links=30_418,
        release=f"releases/{run_id}",
    )
    return replace(r, **changes)  # type: ignore[arg-type]


def _history() -> list[RunRecord]:
    """Five earlier runs with varying volumes; the third has a suppressed quarantine count."""
    runs = []
    for i, (gp_d, hes_d) in enumerate(
        [(12_100, 47_800), (12_220, 47_500), (12_300, 48_010), (12_390, 47_900), (12_420, 48_150)]
    ):
        gp = _gp(
            delivered=gp_d,
            accepted=gp_d - 170 - 15,
            quarantined=170 if i != 2 else 6,
            duplicates=15,
            blank_lines=0,
        )
        if i == 2:
            gp = replace(gp, accepted=gp_d - 6 - 15)
        hes = _hospital(delivered=hes_d, accepted=hes_d - 230 - 20)
        runs.append(_run(f"2024050{i + 1}T020000Z", i + 1, extracts=(gp, hes, _social())))
    return runs


@pytest.fixture
def published(tmp_path: Path) -> tuple[RunRecord, list[RunRecord], Path]:
    run = _run("20240506T020000Z", 6)
    history = [*_history(), run]
    out = render_quality_report(run, history, tmp_path / "report" / "quality.html")
    return run, history, out


def _blocked_run() -> RunRecord:
    rejected = _social(
        delivered=3_200,
        accepted=0,
        quarantined=0,
        blank_lines=0,
        duplicates=0,
        standardised=0,
        flags={},
        quarantine_reasons={},
        completeness={},
        rejected="header_mismatch: column 'nhs_number' missing from the header",
    )
    rejected = replace(rejected, delivered=0)  # the file was refused before rows were counted
    failed = (
        GateOutcome(
            "file_rejected",
            "social_care",
            False,
            "header_mismatch: column 'nhs_number' missing from the header",
        ),
        GateOutcome(
            "quarantine_rate",
            "hospital_episodes",
            False,
            "1.20% of rows quarantined (limit 0.50% from the contract)",
        ),
    )
    hes = _hospital(accepted=47_600, quarantined=580, duplicates=20)
    return _run(
        "20240507T020000Z",
        7,
        status="blocked",
        extracts=(_gp(), hes, rejected),
        gates=_gates(*failed),
        records=None,
        persons=None,
        links=None,
        release=None,
    )


# --- reading the page ----------------------------------------------------------------------------


class _Page(HTMLParser):
    """Tables by id (rows of cells: text, class, title), element counts, and ids' text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[dict[str, str]]]] = {}
        self.tags: dict[str, int] = {}
        self.attrs: list[tuple[str, str, str]] = []
        self.texts: dict[str, str] = {}
        self._table: str | None = None
        self._cell: dict[str, str] | None = None
        self._ids: list[tuple[str, str, int]] = []  # (id, tag, depth)
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.attrs.extend((tag, k, v) for k, v in a.items())
        if tag in ("meta", "br", "hr", "img", "input", "link"):
            return
        self._depth += 1
        if "id" in a:
            self._ids.append((a["id"], tag, self._depth))
            self.texts[a["id"]] = ""
        if tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = {"text": "", "class": a.get("class", ""), "title": a.get("title", "")}
            self.tables[self._table][-1].append(self._cell)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self._cell["text"] = " ".join(self._cell["text"].split())
            self._cell = None
        elif tag == "table":
            self._table = None
        while self._ids and self._ids[-1][2] >= self._depth:
            self._ids.pop()
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += " " + data
        for ident, _, _ in self._ids:
            self.texts[ident] += " " + data


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    for ident in page.texts:
        page.texts[ident] = " ".join(page.texts[ident].split())
    return page


def _body(page: _Page, table: str) -> list[list[dict[str, str]]]:
    """The table's rows after the header row."""
    return page.tables[table][1:]


def _row(page: _Page, table: str, first: str) -> list[dict[str, str]]:
    rows = [r for r in _body(page, table) if r and r[0]["text"].startswith(first)]
    assert len(rows) == 1, (table, first, [r[0]["text"] for r in _body(page, table)])
    return rows[0]


def _texts(row: list[dict[str, str]]) -> list[str]:
    return [c["text"] for c in row]


def _header(page: _Page, table: str) -> list[str]:
    return _texts(page.tables[table][0])


# --- header, gates, books ------------------------------------------------------------------------


def test_header_shows_project_run_times_status_and_model(published):
    run, _, out = published
    page = _parse(out)
    assert page.texts["status"] == "PUBLISHED"
    assert "now the current release" in page.texts["status-text"]
    summary = page.texts["summary"]
    for expected in (
        "mpi-demo",
        "06 May 2024 02:00:00 UTC",
        "06 May 2024 02:17:41 UTC",
        "17 min 41 s",
        "model-2024-04-30-a1b2c3",
        "0.92",
        "releases/20240506T020000Z",
    ):
        assert expected in summary, expected
    assert re.search(r"<h1>Run <span[^>]*>20240506T020000Z</span></h1>", out.read_text())
    assert page.texts["index-figures"] == "63,361 records · 41,207 persons · 30,418 links"
    assert "override" not in page.texts  # no override was recorded
    assert "not-published" not in page.texts


def test_an_override_shows_who_and_why(tmp_path):
    run = _run(
        "r-override",
        6,
        override="J. Smith (IG lead), ticket IG-142: volume drop expected after the GP merger",
        gates=_gates(GateOutcome("volume", "gp_practices", False, "too few rows")),
    )
    page = _parse(render_quality_report(run, [run], tmp_path / "q.html"))
    assert "Published by override despite failed gates" in page.texts["override"]
    assert "J. Smith (IG lead), ticket IG-142" in page.texts["override"]


def test_the_gates_table_lists_every_outcome_failures_first(tmp_path):
    run = _blocked_run()
    page = _parse(render_quality_report(run, [*_history(), run], tmp_path / "q.html"))
    rows = _body(page, "gates-table")
    assert len(rows) == len(run.gates)
    results = [r[2]["text"] for r in rows]
    assert results == ["FAIL", "FAIL"] + ["PASS"] * (len(run.gates) - 2)
    assert _texts(rows[0])[1:] == [
        "social_care",
        "FAIL",
        "header_mismatch: column 'nhs_number' missing from the header",
    ]
    assert rows[0][0]["text"] == "File accepted file_rejected"
    assert _texts(rows[1])[1:3] == ["hospital_episodes", "FAIL"]
    assert "1.20% of rows quarantined" in rows[1][3]["text"]


def test_a_blocked_run_says_plainly_the_previous_release_stays_current(tmp_path):
    run = _blocked_run()
    page = _parse(render_quality_report(run, [*_history(), run], tmp_path / "q.html"))
    assert page.texts["status"] == "BLOCKED"
    assert "the previous release stays current" in page.texts["status-text"]
    assert "The previous release stays current." in page.texts["not-published"]
    assert "2 gates failed" in page.texts["not-published"]
    assert "This run was blocked: the previous release stays current." in page.texts["gates"]
    assert page.texts["index-figures"] == "not changed by this run"
    assert "none: previous release stays current" in page.texts["summary"]


def test_a_failed_run_is_shown_as_failed(tmp_path):
    run = _run("r-failed", 6, status="failed", gates=(), release=None)
    page = _parse(render_quality_report(run, [run], tmp_path / "q.html"))
    assert page.texts["status"] == "FAILED"
    assert "The previous release stays current." in page.texts["not-published"]
    assert "No gate outcomes were recorded" in page.texts["gates"]


def test_a_rejected_delivery_is_listed_with_its_reason(tmp_path):
    run = _blocked_run()
    page = _parse(render_quality_report(run, [run], tmp_path / "q.html"))
    assert [_texts(r) for r in _body(page, "rejected-table")] == [
        [
            "social_care",
            "social_care.csv",
            "header_mismatch: column 'nhs_number' missing from the header",
        ]
    ]
    assert _row(page, "books-table", "social_care")[-1]["text"] == "REJECTED"
    assert _row(page, "books-table", "gp_practices")[-1]["text"] == "accepted"
    # a rejected delivery had no rows checked: "-", not a misleading 0
    assert _row(page, "quarantine-table", "required")[4]["text"] == "-"
    assert _row(page, "completeness-table", "Given name")[3]["text"] == "-"
    assert _row(page, "flags-table", "NHS number: invalid")[3]["text"] == "-"


def test_books_show_every_count_and_the_reconciliation(published):
    _, _, out = published
    page = _parse(out)
    assert _header(page, "books-table")[:6] == [
        "Agency",
        "Delivered",
        "Accepted",
        "Quarantined",
        "Blank lines",
        "Exact duplicates",
    ]
    hes = _texts(_row(page, "books-table", "hospital_episodes"))
    assert hes[1:] == ["48,200", "47,950", "230", "0", "20", "✓ balanced", "accepted"]
    assert "hes_extract.parquet" in hes[0] and "9b8a7c6d5e4f" in hes[0]


def test_failed_whole_extract_rules_are_listed(tmp_path):
    hes = _hospital(contract_problems=["row_count:_table does not hold"])
    gates = _gates(
        GateOutcome("contract", "hospital_episodes", False, "row_count:_table does not hold")
    )
    run = _run("r", 6, status="blocked", extracts=(_gp(), hes), gates=gates)
    page = _parse(render_quality_report(run, [run], tmp_path / "q.html"))
    assert [_texts(r) for r in _body(page, "contract-table")] == [
        ["hospital_episodes", "row_count:_table does not hold"]
    ]
    assert _texts(_body(page, "gates-table")[0])[0] == "Whole-extract contract rules contract"


def test_books_that_do_not_balance_say_so(tmp_path):
    run = _run("r", 6, extracts=(_hospital(delivered=48_201),))
    page = _parse(render_quality_report(run, [run], tmp_path / "q.html"))
    row = _row(page, "books-table", "hospital_episodes")
    assert row[6]["text"] == "✗ NOT balanced"


# --- quarantine, completeness, validity ----------------------------------------------------------


def test_quarantine_reasons_per_agency_most_frequent_first(published):
    _, _, out = published
    page = _parse(out)
    assert _header(page, "quarantine-table") == [
        "Rule",
        "Field",
        "gp_practices",
        "hospital_episodes",
        "social_care",
    ]
    assert [_texts(r) for r in _body(page, "quarantine-table")] == [
        ["required", "nhs_number", "60", "190", "19"],
        ["pattern", "postcode", "80", "40", "0"],
        ["date_format", "date_of_birth", "15", "0", "0"],
        ["allowed_values", "sex", "<10", "0", "0"],
    ]


def test_completeness_per_field_in_canonical_order_with_bars(published):
    _, _, out = published
    page = _parse(out)
    rows = _body(page, "completeness-table")
    assert [r[0]["text"].split()[-1] for r in rows] == [
        "given_name",
        "family_name",
        "date_of_birth",
        "sex",
        "address",
        "postcode",
        "id_nhs_number",
    ]
    assert _texts(_row(page, "completeness-table", "Given name"))[1:] == ["99.9%", "99.7%", "99.0%"]
    assert _texts(_row(page, "completeness-table", "NHS number"))[1:] == ["99.6%", "99.3%", "-"]
    assert _texts(_row(page, "completeness-table", "Date of birth"))[3] == "0%"
    html_text = out.read_text()
    assert html_text.count('class="bar') == 7 * 3 - 4  # social care records only 3 fields
    assert 'class="bar low"' in html_text  # hospital addresses at 76%


def test_validity_flags_as_count_and_share_of_accepted(published):
    _, _, out = published
    page = _parse(out)
    row = _texts(_row(page, "flags-table", "NHS number: invalid"))
    assert row == ["NHS number: invalid nhs_number_invalid", "41 0.3%", "310 0.6%", "0 0%"]
    assert _texts(_row(page, "flags-table", "NHS number: test range"))[2] == "12 <0.1%"
    assert _texts(_row(page, "flags-table", "Postcode: invalid"))[1] == "130 1.1%"
    groups = [
        r[0]["text"]
        for r in _body(page, "flags-table")
        if "group" in r[0]["class"] or (len(r) == 1)
    ]
    assert groups == ["Names", "Date of birth", "Address", "Postcode", "Identifiers"]


# --- small-number suppression --------------------------------------------------------------------


def test_small_counts_are_shown_as_less_than_ten_everywhere(published):
    _, _, out = published
    page = _parse(out)
    gp = _row(page, "books-table", "gp_practices")
    assert gp[4]["text"] == "<10" and "suppressed" in gp[4]["class"]  # 3 blank lines
    assert _row(page, "quarantine-table", "allowed_values")[2]["text"] == "<10"  # 4 rows
    assert _texts(_row(page, "flags-table", "NHS number: placeholder"))[1] == "<10 <0.1%"  # 7
    assert _texts(_row(page, "flags-table", "Postcode: placeholder"))[1] == "<10 <0.1%"  # 4
    assert _texts(_row(page, "flags-table", "DOB: out of range"))[2] == "<10 <0.1%"  # 9
    # no cell anywhere shows a count from 1 to 9
    for table in page.tables.values():
        for row in table:
            for cell in row:
                assert not re.fullmatch(r"[1-9]", cell["text"]), cell


def test_delivered_is_withheld_when_a_component_is_suppressed(published):
    """Otherwise delivered - accepted - quarantined - duplicates gives the 3 blank lines."""
    _, _, out = published
    page = _parse(out)
    gp = _row(page, "books-table", "gp_practices")
    assert [c["text"] for c in gp[1:6]] == ["withheld", "12,310", "152", "<10", "15"]
    assert "withheld" in gp[1]["class"]
    assert "12,480" not in out.read_text()
    assert gp[6]["text"] == "✓ balanced"  # the check runs on the true counts


def test_the_index_record_count_is_withheld_when_an_agency_count_is_suppressed(tmp_path):
    run = _run("r", 6, extracts=(_hospital(), _social(accepted=8, quarantined=3112)))
    page = _parse(render_quality_report(run, [run], tmp_path / "q.html"))
    assert page.texts["index-figures"] == "withheld records · 41,207 persons · 30,418 links"


def test_percentages_of_suppressed_counts_are_banded_not_shown(tmp_path):
    small = _social(
        accepted=1_000,
        quarantined=2_120,
        flags={"nhs_number_invalid": 3, "postcode_invalid": 995},
        completeness={"given_name": 0.003, "family_name": 0.995, "sex": 0.5},
    )
    run = _run("r", 6, extracts=(small,))
    out = render_quality_report(run, [run], tmp_path / "q.html")
    page = _parse(out)
    assert _texts(_row(page, "flags-table", "NHS number: invalid"))[1] == "<10 <1.0%"
    assert _texts(_row(page, "flags-table", "Postcode: invalid"))[1] == "995 99.5%"
    assert _texts(_row(page, "completeness-table", "Given name"))[1] == "<1.0%"  # 3 hold a value
    assert _texts(_row(page, "completeness-table", "Family name"))[1] == ">99.0%"  # 5 lack one
    assert _texts(_row(page, "completeness-table", "Sex"))[1] == "50.0%"
    assert (
        "0.3%" not in out.read_text()
        and "99.5%" not in _row(page, "completeness-table", "Family name")[1]["text"]
    )
    assert 'style="width: 99.0%"' in out.read_text()  # the bar stops at the band, not at 99.5


def test_zero_stays_zero(published):
    _, _, out = published
    page = _parse(out)
    hes = _row(page, "books-table", "hospital_episodes")
    assert hes[4]["text"] == "0" and "zero" in hes[4]["class"]
    assert _texts(_row(page, "flags-table", "Postcode: invalid"))[3] == "0 0%"


def test_suppress_below_zero_turns_suppression_off_and_says_so(tmp_path):
    run = _run("r", 6)
    out = render_quality_report(run, [run], tmp_path / "q.html", suppress_below=0)
    page = _parse(out)
    assert _texts(_row(page, "books-table", "gp_practices"))[1:6] == [
        "12,480",
        "12,310",
        "152",
        "3",
        "15",
    ]
    assert _texts(_row(page, "flags-table", "Postcode: placeholder"))[1] == "4 <0.1%"
    assert "Small-number suppression is OFF" in page.texts["suppression"]
    assert "&lt;10" not in out.read_text()


def test_the_threshold_is_configurable(tmp_path):
    run = _run("r", 6)
    page = _parse(render_quality_report(run, [run], tmp_path / "q.html", suppress_below=5))
    gp = _texts(_row(page, "books-table", "gp_practices"))
    assert gp[1:6] == ["withheld", "12,310", "152", "<5", "15"]
    assert _texts(_row(page, "flags-table", "NHS number: placeholder"))[1] == "7 0.1%"
    assert "from 1 to 4 are shown as <5" in page.texts["suppression"]


def test_a_negative_threshold_is_refused(tmp_path):
    run = _run("r", 6)
    with pytest.raises(ValueError, match="suppress_below"):
        render_quality_report(run, [run], tmp_path / "q.html", suppress_below=-1)


def test_small_counts_in_gate_details_are_banded(tmp_path):
    """gates.py writes counts and rates into details: they are suppressed there too."""
    hes = _hospital(delivered=30, accepted=3, quarantined=7, duplicates=20, standardised=3)
    gates = _gates(
        GateOutcome(
            "volume",
            "hospital_episodes",
            False,
            "3 accepted rows = 0% of the median of the last 5 runs (allowed 50% to 200%)",
        ),
        GateOutcome(
            "quarantine_rate",
            "hospital_episodes",
            False,
            "70.00% of rows quarantined (limit 0.50% from the contract)",
        ),
    )
    run = _run("r", 6, status="blocked", extracts=(_gp(), hes), gates=gates)
    page = _parse(render_quality_report(run, [run], tmp_path / "q.html"))
    details = {r[0]["text"].split()[-1]: r[3]["text"] for r in _body(page, "gates-table")[:2]}
    assert details == {
        "volume": "<10 accepted rows = [withheld] of the median of the last 5 runs "
        "(allowed 50% to 200%)",
        "quarantine_rate": "[withheld] of rows quarantined (limit 0.50% from the contract)",
    }


def test_gate_percentages_stay_when_only_a_blank_line_count_is_suppressed(published):
    """The rate is quarantined / (accepted + quarantined): both shown, so it reveals nothing."""
    _, _, out = published
    page = _parse(out)
    rates = [
        r[3]["text"] for r in _body(page, "gates-table") if r[0]["text"].endswith("quarantine_rate")
    ]
    assert rates == ["0.40% of rows quarantined (limit 0.50% from the contract)"] * 3


_small_or_large = st.one_of(st.integers(0, 12), st.integers(10, 100_000))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    accepted=_small_or_large,
    quarantined=_small_or_large,
    blank=_small_or_large,
    duplicates=_small_or_large,
    flag=_small_or_large,
    reason=_small_or_large,
    share=st.floats(0, 1),
)
def test_no_rendered_figure_reveals_a_small_count(
    tmp_path, accepted, quarantined, blank, duplicates, flag, reason, share
):
    """Whatever the books, no cell shows 1-9 and delivered never gives a hidden cell away."""
    e = _hospital(
        delivered=accepted + quarantined + blank + duplicates,
        accepted=accepted,
        quarantined=quarantined,
        blank_lines=blank,
        duplicates=duplicates,
        standardised=accepted,
        flags={"nhs_number_invalid": min(flag, accepted)},
        quarantine_reasons={"required:nhs_number": min(reason, quarantined)},
        completeness={"given_name": share},
    )
    run = _run("r", 6, extracts=(e,), gates=())
    page = _parse(render_quality_report(run, [run], tmp_path / "q.html"))
    for table in ("books-table", "quarantine-table", "completeness-table", "flags-table"):
        for row in page.tables.get(table, [])[1:]:
            for cell in row[1:]:
                for word in cell["text"].split():
                    assert not re.fullmatch(r"[1-9]", word), (table, cell)
    books = _row(page, "books-table", "hospital_episodes")
    if any("suppressed" in c["class"] for c in books[2:6]):
        assert books[1]["text"] in ("withheld", "<10"), books
    flag_count, flag_pct = _row(page, "flags-table", "NHS number")[1]["text"].split()
    if flag_count == "<10":
        assert flag_pct.startswith("<") or flag_pct == "-"
    completeness = _row(page, "completeness-table", "Given name")[1]["text"]
    present = round(share * accepted)
    if 0 < present < 10 or 0 < accepted - present < 10:
        assert completeness[0] in "<>-", (completeness, present, accepted)


def test_suppression_rules_in_isolation():
    s = Suppression(10)
    assert [s.count(n).text for n in (0, 1, 9, 10, 1_234_567)] == [
        "0",
        "<10",
        "<10",
        "10",
        "1,234,567",
    ]
    assert s.share(5, 20).text == "<50.0%"
    assert s.share(20, 5).text == "-"  # the whole is suppressed: no percentage at all
    assert s.text(
        "12 rows, 1,234 records, 4 lines, at line 3, 2.5 rows", withhold_percentages=False
    ) == ("12 rows, 1,234 records, <10 lines, at line 3, 2.5 rows")


# --- trends --------------------------------------------------------------------------------------


def _charts(out: Path) -> list[str]:
    return re.findall(r"<svg class=\"chart\".*?</svg>", out.read_text(), re.S)


def test_trend_charts_per_agency_over_the_history(published):
    run, history, out = published
    charts = _charts(out)
    assert len(charts) == 3 * 3  # three agencies, delivered / accepted / quarantine rate
    page = _parse(out)
    assert "Trends over the last 6 runs" in page.texts["trends"]
    hes_accepted = next(c for c in charts if 'aria-label="hospital_episodes: accepted' in c)
    assert hes_accepted.count("<circle") == 6
    assert "01 May" in hes_accepted and "06 May" in hes_accepted  # axis labels: run dates
    ticks = re.findall(r'<text class="ytick"[^>]*>([^<]*)</text>', hes_accepted)
    assert ticks == ["0", "20k", "40k", "60k"]  # a labelled y axis from zero
    assert "20240506T020000Z (06 May, published): 47,950" in hes_accepted
    for chart in charts:
        assert "<title>" in chart and "<line" in chart


def test_trend_charts_never_plot_a_suppressed_or_withheld_figure(published):
    _, _, out = published
    charts = _charts(out)
    gp_rate = next(c for c in charts if 'aria-label="gp_practices: quarantined share' in c)
    # run 3 quarantined 6 rows: a grey band instead of a dot
    assert gp_rate.count("<circle") == 5 and gp_rate.count('class="hidden-band"') == 1
    assert "20240503T020000Z (03 May, published): &lt;0.1%</title></rect>" in gp_rate
    gp_delivered = next(c for c in charts if 'aria-label="gp_practices: delivered' in c)
    # withheld in run 3 (6 quarantined) and in this run (3 blank lines)
    assert gp_delivered.count("<circle") == 4 and gp_delivered.count('class="hidden-band"') == 2
    assert "20240506T020000Z (06 May, published): withheld" in gp_delivered


def test_trends_show_at_most_the_last_thirty_runs(tmp_path):
    history = [
        _run(f"r{i:03d}", 1, started_at=f"2024-{1 + i // 28:02d}-{1 + i % 28:02d}T02:00:00+00:00")
        for i in range(40)
    ]
    out = render_quality_report(history[-1], history, tmp_path / "q.html")
    chart = next(c for c in _charts(out) if 'aria-label="hospital_episodes: accepted' in c)
    assert chart.count("<circle") == TREND_RUNS
    assert "r039 (" in chart and "r010 (" in chart and "r009 (" not in chart


def test_a_run_not_yet_in_the_history_is_added_to_the_trend(tmp_path):
    run = _run("20240506T020000Z", 6)
    out = render_quality_report(run, _history(), tmp_path / "q.html")
    chart = next(c for c in _charts(out) if 'aria-label="hospital_episodes: accepted' in c)
    assert chart.count("<circle") == 6


# --- safety: escaping, no values, nothing off the machine ----------------------------------------


def test_text_from_the_run_record_is_escaped(tmp_path):
    evil = '<script>alert("x")</script>'
    run = _run(
        "r<b>1</b>",
        6,
        project="<i>proj</i>",
        override='<img src="https://example.org/t.png"> & "why"',
        extracts=(
            _social(
                agency=evil,
                source="<svg onload=alert(1)>",
                quarantine_reasons={"required:<img src=x onerror=alert(1)>": 19},
                flags={"<b>flag</b>_invalid": 12},
                completeness={"<u>field</u>": 0.5},
                rejected="bad </td></tr></table><script>x()</script>",
                contract_problems=["<b>rule</b> does not hold"],
            ),
        ),
        gates=(GateOutcome("<marquee>", evil, False, "<a href='https://example.org'>x</a>"),),
    )
    out = render_quality_report(run, [run], tmp_path / "q.html")
    page = _parse(out)
    for tag in ("script", "img", "b", "i", "u", "marquee"):
        assert tag not in page.tags, tag
    assert {v for t, k, v in page.attrs if k == "href"} <= {f"#{s}" for s in page.texts}
    assert page.tags["svg"] == 3  # only our charts
    assert not [(t, k) for t, k, _ in page.attrs if k.startswith("on")]
    assert _row(page, "books-table", evil)[0]["text"].startswith(evil)
    assert _row(page, "rejected-table", evil)[2]["text"] == (
        "bad </td></tr></table><script>x()</script>"
    )
    assert _row(page, "quarantine-table", "required")[1]["text"] == "<img src=x onerror=alert(1)>"
    assert '<img src="https://example.org/t.png"> & "why"' in page.texts["override"]
    assert find_external_urls(out, include_links=True) == []


def test_a_run_record_holds_counts_and_codes_never_a_persons_values():
    """The report can only show what these fields hold: adding a field must be a decision."""
    hints = {
        cls: {f.name: str(typing.get_type_hints(cls)[f.name]) for f in dataclasses.fields(cls)}
        for cls in (RunRecord, ExtractSummary, GateOutcome)
    }
    assert set(hints[ExtractSummary]) == {
        "agency", "source", "sha256", "delivered", "accepted", "quarantined", "blank_lines",
        "duplicates", "standardised", "flags", "quarantine_reasons", "rejected", "completeness",
        "contract_problems", "reused", "intake",
    }  # fmt: skip
    assert hints[ExtractSummary]["contract_problems"] == "list[str]"  # rule codes, no values
    assert hints[ExtractSummary]["reused"] == "<class 'int'>"
    assert hints[ExtractSummary]["intake"] == "str | None"  # a fingerprint of configuration
    assert hints[ExtractSummary]["flags"] == "dict[str, int]"
    assert hints[ExtractSummary]["quarantine_reasons"] == "dict[str, int]"
    assert hints[ExtractSummary]["completeness"] == "dict[str, float]"
    assert set(hints[GateOutcome]) == {"gate", "agency", "passed", "detail"}
    assert set(hints[RunRecord]) == {
        "run_id", "project", "started_at", "finished_at", "status", "config_path",
        "model_version", "trained_this_run", "cluster_threshold", "extracts", "gates", "override",
        "records", "persons", "links", "link_grades", "vetoes", "link_mode", "changes",
        "matching", "release", "report",
    }  # fmt: skip
    assert hints[RunRecord]["changes"] == "dict[str, int]"  # new/changed/deleted -> counts
    assert hints[RunRecord]["link_grades"] == "dict[str, int]"  # grade codes -> counts
    assert hints[RunRecord]["vetoes"] == "dict[str, int]"  # reason codes -> counts


def test_the_report_requests_nothing_off_the_machine(published):
    _, _, out = published
    assert find_external_urls(out.parent) == []
    assert find_external_urls(out.parent, include_links=True) == []
    text = out.read_text()
    assert "<script" not in text and "@import" not in text and "url(" not in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_data_docs_are_linked_relatively(tmp_path):
    docs = tmp_path / "data-docs" / "index.html"
    docs.parent.mkdir()
    docs.write_text("<html></html>")
    run = _run("r", 6)
    out = render_quality_report(run, [run], tmp_path / "reports" / "r" / "q.html", data_docs=docs)
    href = re.search(r'id="data-docs">.*?<a href="([^"]+)"', out.read_text(), re.S)
    assert href and href.group(1) == "../../data-docs/index.html"
    assert (out.parent / href.group(1)).resolve() == docs.resolve()
    out2 = render_quality_report(run, [run], tmp_path / "q2.html", data_docs=docs.parent)
    assert 'href="data-docs/index.html"' in out2.read_text()
    out3 = render_quality_report(run, [run], tmp_path / "q3.html")
    assert 'id="data-docs"' not in out3.read_text()


def test_rendering_is_deterministic_and_works_from_the_run_log(tmp_path):
    for r in [*_history(), _blocked_run()]:
        runlog.save(tmp_path / "index", r)
    runs = runlog.history(tmp_path / "index")
    a = render_quality_report(runs[-1], runs, tmp_path / "a.html")
    b = render_quality_report(runs[-1], runs, tmp_path / "b.html")
    assert a.read_bytes() == b.read_bytes()
    assert _parse(a).texts["status"] == "BLOCKED"
    assert not list(tmp_path.glob("*.tmp"))


# --- in the browser, network blocked -------------------------------------------------------------

needs_browser = pytest.mark.skipif(
    BROWSER_SKIP_REASON is not None, reason=BROWSER_SKIP_REASON or ""
)


@needs_browser
def test_the_report_renders_styled_offline_with_no_request_or_error(published, tmp_path):
    _, _, out = published
    blocked_run = _blocked_run()
    blocked = render_quality_report(
        blocked_run, [*_history(), blocked_run], tmp_path / "blocked.html"
    )
    with offline_browser() as browser:
        report = browser.open(out, screenshot=SCREENSHOT, wait_for="svg.chart")
        report_blocked = browser.open(
            blocked, screenshot=Path("/tmp/quality-report-blocked.png"), wait_for="svg.chart"
        )
    for r in (report, report_blocked):
        assert r.blocked == [] and r.failed_requests == []
        assert r.console_errors == [] and r.page_errors == []
        assert r.styled, r.style
        assert r.style["stylesheets"] == 1 and r.style["fonts"] == []  # inline CSS, no web font
    assert SCREENSHOT.stat().st_size > 50_000
