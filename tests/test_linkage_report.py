"""The per-run linkage-quality report: sections, counts, suppression, no personal data, offline."""

from __future__ import annotations

import json
import re
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from linkage.config import load_config
from linkage.reports.linkage_quality import MASK, render_linkage_report
from linkage.reports.offline import find_external_urls
from linkage.reports.quality import Suppression
from tests.browser import BROWSER_SKIP_REASON, offline_browser
from tests.conftest import make_demo_project
from tests.test_pipeline import run_steps

SCREENSHOT = Path("/tmp/linkage-report.png")
SECTIONS = ("summary", "overlap", "agency-pairs", "cluster-sizes", "vetoes", "model", "waterfalls")
CHARTS = (
    "chart-match-weights",
    "chart-m-u",
    "chart-waterfall-certain",
    "chart-waterfall-probable",
    "chart-waterfall-possible",
)
SMALL = Suppression(10)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real release of the 1,500-person demo and the model that scored it."""
    config = load_config(
        make_demo_project(tmp_path_factory.mktemp("linkage-report"), persons=1_500, seed=7)
    )
    run = run_steps(config)
    assert run.release and run.model_version
    return Path(run.release), config.model.dir / run.model_version / "splink_model.json"


@pytest.fixture(scope="module")
def report(release: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "reports" / "linkage.html"
    assert render_linkage_report(*release, out) == out
    return out


def _sql(release: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(release), read_only=True) as con:
        return con.execute(sql).fetchall()


class _Tables(HTMLParser):
    """Cell texts of every table with an id, and the text of every element with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.ids: set[str] = set()
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append(" ".join(" ".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(path: Path) -> _Tables:
    page = _Tables()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _rows(page: _Tables, table: str) -> dict[str, list[str]]:
    return {r[0]: r[1:] for r in page.tables[table][1:]}


def _without_libraries(text: str) -> str:
    """The page minus the inlined Vega libraries (static code, no data)."""
    return re.sub(r"<script data-library=[^>]*>.*?</script>", "", text, flags=re.S)


def _specs(text: str) -> dict[str, dict]:
    found = re.findall(
        r'<script type="application/json" id="([^"]+)-spec">(.*?)</script>', text, re.S
    )
    return {ident: json.loads(body) for ident, body in found}


# --- content -------------------------------------------------------------------------------------


def test_the_report_has_every_section_and_chart(report, release):
    page = _parse(report)
    assert set(SECTIONS) <= page.ids and set(CHARTS) <= page.ids
    text = report.read_text()
    ((run_id, version),) = _sql(
        release[0], "SELECT run_id, model_version FROM runs ORDER BY started_at DESC LIMIT 1"
    )
    assert run_id in text and f'id="model-version">{version}<' in text
    ((records, persons, linked),) = _sql(
        release[0],
        "SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM persons), "
        "(SELECT count(*) FROM links WHERE linked)",
    )
    for n, label in ((records, "records"), (persons, "persons"), (linked, "linked pairs")):
        assert f"{n:,}</span> {label}" in text
    assert set(_specs(text)) == set(CHARTS)


def test_model_parameters_are_a_readable_table_too(report, release):
    settings = json.loads(release[1].read_text())
    rows = _parse(report).tables["parameters-table"][1:]
    levels = [
        lvl
        for c in settings["comparisons"]
        for lvl in c["comparison_levels"]
        if not lvl.get("is_null_level")
    ]
    assert len(rows) == len(levels)
    assert {r[1].rsplit(" level ", 1)[0] for r in rows} == {
        lvl["label_for_charts"] for lvl in levels
    }
    exact = next(r for r in rows if r[1].startswith("Exact match on date_of_birth"))
    assert exact[0] == "Date of birth" and float(exact[4]) > 5  # a strong positive weight


def test_cluster_sizes_and_agency_overlap_match_the_release(report, release):
    page = _parse(report)
    sizes = dict(_sql(release[0], "SELECT record_count, count(*) FROM persons GROUP BY 1"))
    shown = _rows(page, "cluster-sizes-table")
    assert list(shown) == [*map(str, range(1, 10)), "10 or more"]
    for k in range(1, 10):
        assert shown[str(k)][0] == SMALL.count(sizes.get(k, 0)).text
    big = sum(n for k, n in sizes.items() if k >= 10)
    assert shown["10 or more"][0] == SMALL.count(big).text

    known = dict(_sql(release[0], "SELECT agency_count, count(*) FROM persons GROUP BY 1"))
    shown = _rows(page, "known-to-table")
    assert shown["1 agency"] == [SMALL.count(known.get(1, 0)).text]
    assert shown["2 agencies"] == [SMALL.count(known.get(2, 0)).text]

    combos = _sql(release[0], "SELECT agencies, count(*) FROM persons GROUP BY 1")
    shown = _rows(page, "combinations-table")
    assert {" + ".join(a): SMALL.count(n).text for a, n in combos} == {
        k: v[0] for k, v in shown.items()
    }
    figures = [int(v[0].replace(",", "")) if v[0][0].isdigit() else 0 for v in shown.values()]
    assert figures == sorted(figures, reverse=True)  # largest first, suppressed last


def test_the_upset_chart_has_a_bar_and_a_dot_column_per_combination(report, release):
    svg = re.search(r'<svg class="chart upset".*?</svg>', report.read_text(), re.S)
    assert svg
    combos = _sql(release[0], "SELECT agencies FROM persons GROUP BY 1")
    agencies = _sql(release[0], "SELECT DISTINCT agency FROM records")
    assert len(re.findall(r'<rect class="bar', svg.group())) == len(combos)
    assert len(re.findall(r'<circle class="dot', svg.group())) == len(combos) * len(agencies)
    assert len(re.findall(r'<circle class="dot on"', svg.group())) == sum(len(a) for (a,) in combos)


def test_matches_per_agency_pair_by_grade_with_the_expected_count(report, release):
    pairs = _sql(
        release[0],
        """
        SELECT least(a.agency, b.agency), greatest(a.agency, b.agency),
               count(*) FILTER (grade = 'certain'), count(*) FILTER (grade = 'probable'),
               count(*) FILTER (grade = 'possible'), sum(match_probability)
        FROM links l JOIN records a ON a.record_key = l.record_key_l
        JOIN records b ON b.record_key = l.record_key_r GROUP BY 1, 2 ORDER BY 1, 2
        """,
    )
    rows = _parse(report).tables["agency-pairs-table"][1:]
    assert [r[:2] for r in rows] == [[a, b] for a, b, *_ in pairs]
    for row, (_, _, certain, probable, possible, expected) in zip(rows, pairs, strict=True):
        assert row[2:5] == [SMALL.count(n).text for n in (certain, probable, possible)]
        assert row[5] == (f"{expected:,.1f}" if expected >= 10 else "<10")


def test_vetoes_per_reason_and_possible_pairs(report, release):
    counts = dict(_sql(release[0], "SELECT veto, count(*) FROM links GROUP BY 1"))
    rows = _rows(_parse(report), "vetoes-table")
    for reason in ("identifier_conflict", "given_name_conflict", "cluster_size", "weak_bridge"):
        assert rows[reason][1] == SMALL.count(counts.get(reason, 0)).text
    ((possible,),) = _sql(release[0], "SELECT count(*) FROM links WHERE grade = 'possible'")
    assert f">{SMALL.count(possible).text.replace('<', '&lt;')}</strong>" in report.read_text()


def test_waterfalls_show_the_sampled_links_per_grade_with_masked_values(report, release):
    specs = _specs(report.read_text())
    grades = dict(_sql(release[0], "SELECT grade, count(*) FROM links GROUP BY 1"))
    for grade in ("certain", "probable", "possible"):
        data = specs[f"chart-waterfall-{grade}"]["data"]["values"]
        assert len({d["record_number"] for d in data}) == min(2, grades.get(grade, 0))
        for d in data:
            masked = d["column_name"] not in ("Prior", "Final score")
            assert (d["value_l"], d["value_r"]) == ((MASK, MASK) if masked else ("", ""))
        assert {d["column_name"] for d in data} >= {"Prior", "name", "date_of_birth", "Final score"}


def test_sampling_is_deterministic_and_follows_the_settings(report, release, tmp_path):
    again = render_linkage_report(*release, tmp_path / "again.html")
    assert again.read_bytes() == report.read_bytes()
    three = render_linkage_report(*release, tmp_path / "three.html", samples_per_grade=3, seed=5)
    data = _specs(three.read_text())["chart-waterfall-certain"]["data"]["values"]
    assert len({d["record_number"] for d in data}) == 3
    assert not list(tmp_path.glob("*.tmp"))


# --- suppression ---------------------------------------------------------------------------------


def test_small_counts_are_shown_as_less_than_ten(report, release):
    sizes = dict(_sql(release[0], "SELECT record_count, count(*) FROM persons GROUP BY 1"))
    small = [k for k, n in sizes.items() if 0 < n < 10 and k < 10]
    assert small, "the demo release should have a rare cluster size"
    page = _parse(report)
    for k in small:
        assert _rows(page, "cluster-sizes-table")[str(k)][0] == "<10"
    for table, rows in page.tables.items():
        if table != "parameters-table":  # m and u are probabilities, not counts
            assert not [c for r in rows for c in r[1:] if re.fullmatch(r"[1-9]", c)], table
    text = _without_libraries(report.read_text())
    assert not re.search(r": [1-9]</title>", text)  # nor in a chart's tooltip
    assert 'class="bar hidden-bar"' in text and "&lt;10</text>" in text
    assert "shown as &lt;10" in text


def test_suppression_can_be_turned_off_or_raised(release, tmp_path):
    sizes = dict(_sql(release[0], "SELECT record_count, count(*) FROM persons GROUP BY 1"))
    k, n = next((k, n) for k, n in sorted(sizes.items()) if 0 < n < 10)
    off = render_linkage_report(*release, tmp_path / "off.html", suppress_below=0)
    assert _rows(_parse(off), "cluster-sizes-table")[str(k)][0] == str(n)
    assert "suppression is OFF" in off.read_text()
    high = render_linkage_report(*release, tmp_path / "high.html", suppress_below=100_000)
    assert set(_rows(_parse(high), "known-to-table")["1 agency"]) == {"<100000"}
    with pytest.raises(ValueError, match="suppress_below"):
        render_linkage_report(*release, tmp_path / "bad.html", suppress_below=-1)


# --- no personal data ----------------------------------------------------------------------------


def _values(release: Path, where: str) -> set[str]:
    """Every personal value of the records chosen by ``where``, as the page could print it."""
    with duckdb.connect(str(release), read_only=True) as con:
        cur = con.execute(f"SELECT * FROM records r WHERE {where}")
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    personal = {"person_id", "record_key", "source_record_id", "given_name", "middle_names",
                "family_name", "date_of_birth", "address", "postcode"}  # fmt: skip
    out = set()
    for row in rows:
        for name, v in zip(names, row, strict=True):
            if v is not None and (name in personal or name.startswith("id_")):
                out.add(v.isoformat() if isinstance(v, date) else str(v))
    return out


def test_no_value_of_any_record_appears_in_the_report(report, release):
    sampled = _values(release[0], "hash(record_key) % 7 = 0 ORDER BY hash(record_key) LIMIT 200")
    # Every record of every scored pair: the waterfall samples are among them.
    linked = _values(
        release[0],
        "record_key IN (SELECT record_key_l FROM links UNION SELECT record_key_r FROM links)",
    )
    assert len(sampled) > 800 and len(linked) > 2_000
    text = report.read_text()
    data = _without_libraries(text)
    for value in sampled | linked:
        if len(value) < 3:
            continue  # "5" (a house number), "MO": indistinguishable from page text
        assert not re.search(rf"(?<![\w.-]){re.escape(value)}(?![\w-])", data), value
        if len(value) >= 8:  # long values must not be anywhere, libraries included
            assert value not in text, value
    assert MASK in data


# --- offline -------------------------------------------------------------------------------------


def test_the_report_requests_nothing_off_the_machine(report):
    assert find_external_urls(report.parent) == []
    assert find_external_urls(report.parent, include_links=True) == []
    text = report.read_text()
    assert "<link" not in text and not re.search(r"<script[^>]*\ssrc=", text)
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    for lib in ("vega", "vega-lite", "vega-embed"):
        assert text.count(f'<script data-library="{lib}">') == 1
    assert "sourceMappingURL" not in text


needs_browser = pytest.mark.skipif(
    BROWSER_SKIP_REASON is not None, reason=BROWSER_SKIP_REASON or ""
)

_RENDERED = """
() => [...document.querySelectorAll('[data-vega-spec]')].map(el => {
  const svg = el.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return {id: el.id, state: el.getAttribute('data-rendered'), marks: el.querySelectorAll(
    'svg path, svg rect').length, width: box.width, height: box.height, text: el.textContent};
})
"""


@needs_browser
def test_the_charts_render_offline_with_no_request_or_error(report):
    all_done = (
        "[...document.querySelectorAll('[data-vega-spec]')]"
        ".every(el => el.hasAttribute('data-rendered'))"
    )
    with offline_browser() as browser:
        opened = browser.open(
            report, screenshot=SCREENSHOT, wait_for="[data-rendered]", settle_ms=2_000
        )
        page = browser.context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        errors: list[str] = []
        page.goto(report.absolute().as_uri(), wait_until="load")
        page.wait_for_function(all_done, timeout=30_000)
        charts = page.evaluate(_RENDERED)
        page.close()
        blocked = list(browser.blocked)
    assert opened.blocked == [] and blocked == [] and opened.failed_requests == []
    assert opened.console_errors == [] and opened.page_errors == [] and errors == []
    assert opened.styled, opened.style
    assert [c["id"] for c in charts] == list(CHARTS)
    for c in charts:
        assert c["state"] == "true" and c["marks"] > 10, c
        assert c["width"] > 200 and c["height"] > 200, c
    for c in charts[2:]:
        assert MASK in c["text"]  # the waterfalls print masked values, never real ones


def test_a_lone_suppressed_count_takes_its_smallest_neighbour_with_it() -> None:
    """Secondary suppression: with one hidden count, the total must not reveal it."""
    from linkage.reports.linkage_quality import WITHHELD, _cells
    from linkage.reports.quality import Suppression

    s = Suppression(10)
    assert [c.text for c in _cells(s, [100, 4, 30, 50, 0])] == [
        "100", "<10", WITHHELD.text, "50", "0"
    ]  # fmt: skip
    assert [c.text for c in _cells(s, [100, 4, 3, 50])] == ["100", "<10", "<10", "50"]
    assert [c.text for c in _cells(Suppression(0), [100, 4])] == ["100", "4"]
