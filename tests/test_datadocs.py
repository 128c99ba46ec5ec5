"""Self-contained GX Data Docs: no request leaves the machine, and the pages are still styled."""

from __future__ import annotations

import base64
import hashlib
import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from linkage.reports.datadocs import (
    ASSETS_DIR,
    CDN_ASSETS,
    ROW_LEVEL_KEYS,
    OfflineDocsError,
    _build_gx_site,
    build_data_docs,
    make_self_contained,
    sanitise_result,
)
from linkage.reports.offline import StartTag, find_external_urls, parse_html, scan_text
from tests.browser import BROWSER_SKIP_REASON, offline_browser

# Failing values that must never reach a page: Data Docs show counts only.
SECRET_VALUES = ["SECRET-NHS-0123", "Zebedee Quartermain", "row-secret-7"]


def _gx_templates() -> Path:
    import great_expectations

    return Path(great_expectations.__file__).parent / "render" / "view" / "templates"


@pytest.fixture(scope="module")
def gx_run():
    """Validation results and suites made the way the pipeline makes them (ephemeral, pandas)."""
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    people = pd.DataFrame(
        {
            "row_id": ["r1", "r2", "r3", "r4", "row-secret-7", "r6", "r7", "r8"],
            "nhs_number": ["9434765919", "SECRET-NHS-0123", "9434765870", None]
            + ["9434765919"] * 4,
            "name": ["Ann", "Bob", "Cyd", "Dot", "Zebedee Quartermain", "Eda", "Flo", "Gus"],
            "age": [5, 25, 45, 65, 85, 30, 50, 70],
        }
    )
    asset = context.data_sources.add_pandas("agency_a").add_dataframe_asset("people")
    batch = asset.add_batch_definition_whole_dataframe("all")
    contract = context.suites.add(gx.ExpectationSuite(name="agency_a.people"))
    contract.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column="nhs_number"))
    contract.add_expectation(
        gx.expectations.ExpectColumnValuesToMatchRegex(column="nhs_number", regex=r"^\d{10}$")
    )
    contract.add_expectation(
        gx.expectations.ExpectColumnValueLengthsToBeBetween(
            column="name", min_value=3, max_value=12
        )
    )
    contract.add_expectation(gx.expectations.ExpectTableRowCountToBeBetween(min_value=1))
    # Renders vega-lite charts on both pages: the vendored vega must work offline.
    contract.add_expectation(
        gx.expectations.ExpectColumnKLDivergenceToBeLessThan(
            column="age",
            partition_object={"bins": [0, 20, 40, 60, 80, 100], "weights": [0.2] * 5},
            threshold=0.6,
        )
    )
    rows = context.suites.add(gx.ExpectationSuite(name="agency_a.row_counts"))
    rows.add_expectation(gx.expectations.ExpectTableColumnCountToEqual(value=4))
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": ["row_id"]}
    results = []
    for suite in (contract, rows):
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"check {suite.name}", data=batch, suite=suite)
        )
        results.append(
            definition.run(batch_parameters={"dataframe": people}, result_format=result_format)
        )
    return {"results": results, "suites": [contract, rows]}


@pytest.fixture(scope="module")
def site(gx_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "data-docs"
    dicts = [r.to_json_dict() for r in gx_run["results"]]
    index = build_data_docs(dicts, out, suites=[s.to_json_dict() for s in gx_run["suites"]])
    assert index == out / "index.html"
    return out


def _page(site: Path, kind: str) -> Path:
    if kind == "index":
        return site / "index.html"
    if kind == "suite":
        return site / "expectations" / "agency_a" / "people.html"
    return next((site / "validations" / "agency_a" / "people").rglob("*.html"))


# --- sanitising ----------------------------------------------------------------------------------


def test_results_really_hold_row_level_values(gx_run):
    """The guard is needed: COMPLETE results carry the failing values and row ids."""
    text = str(gx_run["results"][0].to_json_dict())
    assert all(v in text for v in SECRET_VALUES)


def test_sanitise_removes_row_level_keys_from_dicts_and_objects(gx_run):
    result = gx_run["results"][0]
    for given in (result, result.to_json_dict()):
        clean = sanitise_result(given)
        text = str(clean)
        assert not any(key in text for key in ROW_LEVEL_KEYS)
        assert not any(v in text for v in SECRET_VALUES)
        counts = [r["result"].get("unexpected_count") for r in clean["results"]]
        assert 1 in counts  # the counts stay
    assert "partial_unexpected_list" in str(result.to_json_dict())  # input untouched


def test_pages_show_counts_not_values(site):
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert not any(v in text for v in SECRET_VALUES), page
    validation = _page(site, "validation").read_text()
    assert "unexpected values found" in validation


# --- self-contained output -----------------------------------------------------------------------


def test_raw_gx_output_references_cdns_and_the_tracking_logo(gx_run, tmp_path):
    """The scanner sees what GX itself writes, so its silence on our output means something."""
    raw = tmp_path / "raw"
    _build_gx_site([sanitise_result(r) for r in gx_run["results"]], None, raw)
    found = {url for _, _, url in find_external_urls(raw)}
    assert set(CDN_ASSETS) <= found | _unused_cdn_variants(found)
    assert any("great-expectations-web-assets" in u and "logo" in u for u in found)
    assert len(find_external_urls(raw)) > 3 * len(list(raw.rglob("*.html")))


def _unused_cdn_variants(found: set[str]) -> set[str]:
    # Index and other pages ask for the filter-control CSS under two names; a site with only some
    # page kinds may not use both.
    return {u for u in CDN_ASSETS if "filter-control" in u and u.endswith(".css")}


def test_built_site_requests_nothing_off_the_machine(site):
    assert find_external_urls(site) == []
    assert find_external_urls(site, include_links=True) == []


def test_every_local_reference_resolves(site):
    for page in site.rglob("*.html"):
        if "vendor" in page.parts:
            continue
        for ev in parse_html(page.read_text()):
            if not isinstance(ev, StartTag):
                continue
            for name in ("src", "href"):
                value = ev.get(name)
                if not value or ev.tag == "a" or value.startswith(("#", "data:")):
                    continue
                assert (page.parent / value).resolve().is_file(), (
                    f"{page}: <{ev.tag} {name}={value}>"
                )


def test_pages_link_vendored_assets_and_drop_sri(site):
    for kind in ("index", "suite", "validation"):
        text = _page(site, kind).read_text()
        assert "static/vendor/jquery/jquery.min.js" in text
        assert "static/vendor/vega-embed/vega-embed.min.js" in text
        assert "integrity=" not in text and "crossorigin=" not in text
        assert "great-expectations-web-assets" not in text
        assert "newsletter" not in text.lower()
    assert (site / "static" / "vendor" / "README.md").is_file()


def test_vendored_files_match_gx_integrity_hashes():
    """Same bytes as the CDN files GX pins with SRI: the vendored copies are the real ones."""
    template = (_gx_templates() / "js_script_imports.j2").read_text()
    pinned = re.findall(r'src="([^"]+)"\s+integrity="([^"]+)"', template)
    assert len(pinned) >= 2
    for url, integrity in pinned:
        algorithm, expected = integrity.split("-", 1)
        (local,) = CDN_ASSETS[url]
        digest = hashlib.new(algorithm, (ASSETS_DIR / local).read_bytes()).digest()
        assert base64.b64encode(digest).decode() == expected, url


def test_every_cdn_reference_in_gx_templates_is_vendored():
    """Fails on a GX upgrade that adds or changes a CDN file: vendor it and map it."""
    found = set()
    for template in _gx_templates().glob("*.j2"):
        found |= {h.url for h in scan_text(template.read_text(), "html")}
    cdn = {u for u in found if "great-expectations-web-assets" not in u}
    assert cdn == set(CDN_ASSETS)


def test_vendored_set_is_minimal_and_licensed():
    used = {f for files in CDN_ASSETS.values() for f in files}
    used.add("fontawesome-free/webfonts/fa-solid-900.woff2")  # referenced by solid.min.css
    readme = (ASSETS_DIR / "README.md").read_text()
    for path in ASSETS_DIR.rglob("*"):
        if path.is_dir() or path.name == "README.md" or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(ASSETS_DIR).as_posix()
        assert rel in used or path.name.startswith("LICENSE"), f"unused vendored file {rel}"
    for library in {f.split("/")[0] for f in used}:
        assert list((ASSETS_DIR / library).glob("LICENSE*")), f"{library} has no LICENSE"
        assert f"`{library}/" in readme, f"{library} missing from assets/README.md"
    for rel in used:
        assert (ASSETS_DIR / rel).is_file(), rel


def test_unknown_external_reference_fails_the_build(tmp_path):
    (tmp_path / "static").mkdir()
    (tmp_path / "index.html").write_text(
        '<html><head><script src="https://new-cdn.example/lib.js"></script></head></html>'
    )
    with pytest.raises(OfflineDocsError, match="new-cdn.example"):
        make_self_contained(tmp_path)


def test_a_failed_build_leaves_out_dir_alone(gx_run, tmp_path, monkeypatch):
    out = tmp_path / "docs"
    build_data_docs([gx_run["results"][1]], out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def broken(site_dir):
        raise OfflineDocsError(site_dir, [])

    monkeypatch.setattr("linkage.reports.datadocs.make_self_contained", broken)
    with pytest.raises(OfflineDocsError):
        build_data_docs([gx_run["results"][0]], out, overwrite=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["docs"]  # no staging folder left behind


def test_out_dir_rules(gx_run, tmp_path):
    results = [gx_run["results"][1]]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a Data Docs site"):
        build_data_docs(results, other, overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"

    out = tmp_path / "docs"
    build_data_docs(results, out)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        build_data_docs(results, out)
    build_data_docs(gx_run["results"], out, overwrite=True)
    assert len(list((out / "validations").rglob("*.html"))) == 2
    assert (out / "expectations" / "agency_a" / "people.html").is_file()  # rebuilt from results


def test_the_callers_gx_context_is_restored(gx_run, tmp_path):
    import great_expectations as gx
    from great_expectations.data_context.data_context.context_factory import project_manager

    mine = gx.get_context(mode="ephemeral")
    checkpoint_shaped = {"run_results": {"some-id": gx_run["results"][1].to_json_dict()}}
    build_data_docs([checkpoint_shaped], tmp_path / "docs")
    assert project_manager.get_current_project() is mine
    assert len(list((tmp_path / "docs" / "validations").rglob("*.html"))) == 1


# --- in the browser, network blocked -------------------------------------------------------------

needs_browser = pytest.mark.skipif(
    BROWSER_SKIP_REASON is not None, reason=BROWSER_SKIP_REASON or ""
)


@needs_browser
def test_pages_render_styled_with_no_request_off_the_machine(site):
    shots = Path(tempfile.gettempdir())
    with offline_browser() as browser:
        reports = {
            kind: browser.open(
                _page(site, kind),
                screenshot=shots / f"datadocs-{kind}.png",
                # the KL-divergence charts: vega draws them on a canvas once its scripts ran
                wait_for=".vega-embed canvas" if kind != "index" else "table",
            )
            for kind in ("index", "validation", "suite")
        }
    for kind, report in reports.items():
        assert report.blocked == [], kind
        assert report.failed_requests == [], kind
        assert report.console_errors == [], kind
        assert report.page_errors == [], kind
        assert report.styled, (kind, report.style)
        assert report.screenshot is not None and report.screenshot.stat().st_size > 10_000
    for kind in ("index", "validation"):  # pages with status icons use the vendored icon font
        assert "Font Awesome" in (reports[kind].style["icon_font_family"] or ""), kind
        assert "Font Awesome 6 Free" in reports[kind].loaded_fonts(), kind


@needs_browser
def test_dark_mode_pages_request_nothing(site):
    """GX's dark-mode CSS fetched its logo from S3: that rule is neutralised too."""
    with offline_browser(color_scheme="dark") as browser:
        report = browser.open(
            _page(site, "validation"),
            screenshot=Path(tempfile.gettempdir()) / "datadocs-validation-dark.png",
            wait_for=".vega-embed canvas",
        )
    assert report.blocked == [] and report.failed_requests == [] and report.console_errors == []
    assert report.styled


@needs_browser
def test_raw_gx_pages_are_caught_by_the_harness(gx_run, tmp_path):
    """Negative control: GX's own output tries the CDNs and the logo, and renders unstyled."""
    raw = tmp_path / "raw"
    _build_gx_site([sanitise_result(r) for r in gx_run["results"]], None, raw)
    with offline_browser() as browser:
        report = browser.open(
            raw / "index.html", screenshot=Path(tempfile.gettempdir()) / "datadocs-raw-gx.png"
        )
    blocked = {b.url for b in report.blocked}
    assert any("cdn.jsdelivr.net" in u for u in blocked)
    assert any("great-expectations-web-assets" in u for u in blocked)
    assert not report.styled
