"""Great Expectations Data Docs that open on a server with no internet, and leak nothing.

GX 1.x Data Docs pages load about fifteen scripts, style sheets and fonts from CDNs (jQuery,
Bootstrap, vega, Font Awesome...) and a logo from GX's S3 bucket whose URL carries the data
context id and a timestamp. Offline they render unstyled; online each view is reported to a third
party. :func:`build_data_docs` builds the site with GX and then makes every page self-contained:

* each CDN file is replaced by the same file vendored under ``linkage/reports/assets/`` (copied
  into ``<site>/static/vendor/`` and referenced relatively; ``integrity``/``crossorigin`` are
  dropped since they break ``file://`` loads; the vendored bytes match GX's SRI hashes);
* the remote logo is removed (its ``alt`` text stays, still linking home), the remote dark-mode
  logo in the CSS becomes ``none``, the newsletter footer goes, and hyperlinks to other sites
  become plain text;
* the site is then scanned (:func:`linkage.reports.offline.find_external_urls`, links included):
  if anything off the machine is still referenced, for example after a GX upgrade adds a CDN
  file, :class:`OfflineDocsError` is raised and nothing is published to ``out_dir``.

Validation results are sanitised first (:func:`sanitise_result`): the row-level keys that carry
failing values or row identifiers are removed, so the pages show counts only.

Usage, with results from ``validation_definition.run(...)`` (objects or ``to_json_dict()``)::

    index = build_data_docs(results, Path("out/data-docs"), suites=[suite], overwrite=True)

Building makes a private ephemeral GX context; the caller's current GX context (the one
``gx.get_context()`` returned last) is restored afterwards.
"""

from __future__ import annotations

import copy
import html
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from linkage.reports.offline import (
    CSS_URL_RE,
    EndTag,
    StartTag,
    Text,
    css_without_comments,
    is_external,
    iter_scanned_files,
    parse_html,
    scan_external_references,
)

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).with_name("assets")
VENDOR_DIR = Path("static") / "vendor"
"""Where the vendored assets are copied inside a built site."""

# Every CDN reference in GX 1.24.1's Data Docs templates -> the vendored file(s) that replace it
# (paths relative to ASSETS_DIR). GX asks for vega@5, vega-lite@5 and vega-embed@6 without a minor
# version: the newest of each major was vendored. Font Awesome's all.min.css is replaced by the
# core CSS and the solid style, the only one GX uses (`fas fa-check-circle`, `fa-times`...).
CDN_ASSETS: dict[str, tuple[str, ...]] = {
    "https://code.jquery.com/jquery-3.7.1.min.js": ("jquery/jquery.min.js",),
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js/popper.min.js",
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap/js/bootstrap.min.js",
    ),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap/css/bootstrap.min.css",
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (  # noqa: E501
        "bootstrap-dark/bootstrap-prefers-dark.min.css",
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table/bootstrap-table.min.js",
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table/bootstrap-table.min.css",
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": (  # noqa: E501
        "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.js",
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": (  # noqa: E501
        "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.css",
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": (  # noqa: E501
        "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.css",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (  # noqa: E501
        "bootstrap-datepicker/js/bootstrap-datepicker.min.js",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (  # noqa: E501
        "bootstrap-datepicker/css/bootstrap-datepicker.min.css",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "fontawesome-free/css/fontawesome.min.css",
        "fontawesome-free/css/solid.min.css",
    ),
    "https://cdn.jsdelivr.net/npm/vega@5": ("vega/vega.min.js",),
    "https://cdn.jsdelivr.net/npm/vega-lite@5": ("vega-lite/vega-lite.min.js",),
    "https://cdn.jsdelivr.net/npm/vega-embed@6": ("vega-embed/vega-embed.min.js",),
}

ROW_LEVEL_KEYS = frozenset(
    {
        "partial_unexpected_list",
        "unexpected_list",
        "partial_unexpected_counts",
        "unexpected_index_list",
        "partial_unexpected_index_list",
        "unexpected_index_query",
    }
)
"""Result keys holding failing values or row identifiers: removed before Data Docs are built."""

_DROPPED_ON_LOCALISE = frozenset({"integrity", "crossorigin"})
_UNSAFE_SUITE_NAME = re.compile(r"[/\\]|^\.|\.\.")


class OfflineDocsError(RuntimeError):
    """The built site still references another machine: the references found are listed."""

    def __init__(self, site: Path, references: list) -> None:
        self.references = references
        lines = "\n".join(
            f"  - {r.path.relative_to(site)}:{r.line}: {r.url} ({r.context})"
            for r in references[:50]
        )
        super().__init__(
            f"{len(references)} reference(s) off the machine remain in the Data Docs built in "
            f"{site}; vendor the file under linkage/reports/assets/ and add it to CDN_ASSETS in "
            f"linkage/reports/datadocs.py:\n{lines}"
        )


# ---------------------------------------------------------------------------------------------
# Sanitising
# ---------------------------------------------------------------------------------------------


def sanitise_result(result: Mapping[str, Any] | Any) -> dict[str, Any]:
    """A deep copy of one validation result without the :data:`ROW_LEVEL_KEYS`, at any depth.

    Accepts the dict form (``ExpectationSuiteValidationResult.to_json_dict()``) or the object.

    >>> r = {"suite_name": "s", "results": [{"result": {"unexpected_count": 2,
    ...      "partial_unexpected_list": ["Ann"], "unexpected_index_list": [{"row_id": 7}]}}]}
    >>> sanitise_result(r)["results"][0]["result"]
    {'unexpected_count': 2}
    >>> r["results"][0]["result"]["partial_unexpected_list"]  # the input is left alone
    ['Ann']
    """
    if not isinstance(result, Mapping):
        to_json_dict = getattr(result, "to_json_dict", None)
        if to_json_dict is None:
            raise TypeError(
                f"expected a validation result dict or ExpectationSuiteValidationResult, "
                f"got {type(result).__name__}"
            )
        result = to_json_dict()
    return _without_row_level(copy.deepcopy(dict(result)))


def _without_row_level(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_row_level(v) for k, v in value.items() if k not in ROW_LEVEL_KEYS}
    if isinstance(value, list):
        return [_without_row_level(v) for v in value]
    return value


def _expand(results: Iterable[Any]) -> list[Any]:
    """Validation results, with checkpoint results (``run_results``) opened up."""
    expanded: list[Any] = []
    for r in results:
        run_results = (
            r.get("run_results") if isinstance(r, Mapping) else getattr(r, "run_results", None)
        )
        if isinstance(run_results, Mapping):
            expanded.extend(run_results.values())
        else:
            expanded.append(r)
    return expanded


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


def build_data_docs(
    results: Iterable[Mapping[str, Any] | Any],
    out_dir: Path,
    *,
    suites: Iterable[Mapping[str, Any] | Any] | None = None,
    site_name: str = "linkage",
    overwrite: bool = False,
) -> Path:
    """Build self-contained GX Data Docs for ``results`` into ``out_dir``; return its index.html.

    ``results``: GX 1.x validation results, as dicts (``to_json_dict()``) or
    ``ExpectationSuiteValidationResult`` objects; checkpoint results are opened up. They are
    sanitised (:func:`sanitise_result`) whether or not the caller already did.

    ``suites``: the expectation suites (dicts or ``ExpectationSuite``) to give a suite page.
    A result whose suite is not given gets one rebuilt from the expectations it ran.

    ``site_name``: shown in the index page's header ("Data Docs | linkage").

    ``out_dir`` must not exist or be empty, or, with ``overwrite=True``, hold an earlier site
    (it is replaced whole). The site is built and checked in a sibling folder first, so a failed
    build (:class:`OfflineDocsError` included) leaves ``out_dir`` as it was.
    """
    out_dir = Path(out_dir).absolute()
    _check_out_dir(out_dir, overwrite)
    clean = [sanitise_result(r) for r in _expand(results)]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _build_gx_site(clean, None if suites is None else list(suites), staging, site_name)
        make_self_contained(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / "index.html"


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return
    looks_like_site = (out_dir / "index.html").is_file() and (out_dir / "static").is_dir()
    if not overwrite or not looks_like_site:
        what = (
            "an earlier Data Docs site"
            if looks_like_site
            else "files that are not a Data Docs site"
        )
        raise FileExistsError(
            f"{out_dir} already holds {what}; "
            + ("pass overwrite=True to replace it" if looks_like_site else "choose an empty folder")
        )


def _build_gx_site(
    results: list[dict[str, Any]],
    suites: list[Any] | None,
    site_dir: Path,
    site_name: str = "linkage",
) -> None:
    """GX's own Data Docs for ``results`` in ``site_dir`` (still loading from CDNs)."""
    from great_expectations.data_context.data_context.context_factory import project_manager

    try:
        previous = project_manager.get_current_project()
    except Exception:  # no context made yet in this process
        previous = None
    try:
        _build_with_ephemeral_context(results, suites, site_dir, site_name)
    finally:
        project_manager.set_project(previous)


def _build_with_ephemeral_context(
    results: list[dict[str, Any]], suites: list[Any] | None, site_dir: Path, site_name: str
) -> None:
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResultSchema,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
    )
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        data_docs_sites={
            site_name: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(site_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    context = gx.get_context(mode="ephemeral", project_config=config)

    wanted: dict[str, Any] = {}
    for s in suites or []:
        suite = s if isinstance(s, gx.ExpectationSuite) else _suite_from_dict(s)
        wanted[_safe_suite_name(suite.name)] = suite
    for r in results:
        name = _safe_suite_name(r.get("suite_name", ""))
        if name not in wanted:
            wanted[name] = _suite_from_result(r)
    for suite in wanted.values():
        try:
            context.suites.add(suite)
        except Exception as exc:  # a custom expectation GX cannot load: keep the results page
            log.warning("no Data Docs page for expectation suite %r: %s", suite.name, exc)

    schema = ExpectationSuiteValidationResultSchema()
    used: set[tuple[str, str, str]] = set()
    for r in results:
        result = schema.load(r)
        run_id = _run_id(r, RunIdentifier)
        batch = _batch_identifier(r)
        candidate, n = batch, 1
        while (result.suite_name, str(run_id), candidate) in used:
            n += 1
            candidate = f"{batch}-{n}"
        used.add((result.suite_name, str(run_id), candidate))
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
            run_id=run_id,
            batch_identifier=candidate,
        )
        context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=[site_name])


def _safe_suite_name(name: str) -> str:
    if not name or _UNSAFE_SUITE_NAME.search(name):
        raise ValueError(f"expectation suite name {name!r} cannot name a Data Docs page")
    return name


def _suite_from_dict(d: Mapping[str, Any]) -> Any:
    import great_expectations as gx

    return gx.ExpectationSuite(
        name=d["name"],
        expectations=[_expectation_config(e) for e in d.get("expectations", [])],
        meta=d.get("meta"),
        notes=d.get("notes"),
    )


def _suite_from_result(r: Mapping[str, Any]) -> Any:
    import great_expectations as gx

    configs = [
        _expectation_config(er["expectation_config"])
        for er in r.get("results", [])
        if er.get("expectation_config")
    ]
    return gx.ExpectationSuite(name=r["suite_name"], expectations=configs)


def _expectation_config(e: Mapping[str, Any]) -> dict[str, Any]:
    e = dict(e)
    e["kwargs"] = {k: v for k, v in (e.get("kwargs") or {}).items() if k != "batch_id"}
    e.pop("id", None)  # the suite store gives ids; a copied id would clash between suites
    e.pop("rendered_content", None)
    return e


def _run_id(r: Mapping[str, Any], run_identifier: Any) -> Any:
    meta = r.get("meta") or {}
    run = meta.get("run_id")
    if isinstance(run, Mapping):
        return run_identifier(run_name=run.get("run_name"), run_time=run.get("run_time"))
    return run_identifier(run_name=None, run_time=meta.get("validation_time"))


def _batch_identifier(r: Mapping[str, Any]) -> str:
    batch = None
    for er in r.get("results", []):
        batch = ((er.get("expectation_config") or {}).get("kwargs") or {}).get("batch_id")
        if batch:
            break
    if not batch:
        bd = (r.get("meta") or {}).get("active_batch_definition") or {}
        parts = [bd.get("datasource_name"), bd.get("data_asset_name")]
        batch = "-".join(str(p) for p in parts if p) or "batch"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(batch)).strip("._") or "batch"


# ---------------------------------------------------------------------------------------------
# Making a site self-contained
# ---------------------------------------------------------------------------------------------


def make_self_contained(site_dir: Path) -> None:
    """Rewrite a built GX Data Docs site in place so that opening it requests nothing remote.

    Raises :class:`OfflineDocsError` if a reference to another machine is left afterwards.
    """
    site_dir = Path(site_dir)
    vendor = site_dir / VENDOR_DIR
    shutil.copytree(
        ASSETS_DIR, vendor, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    for page in sorted(site_dir.rglob("*.html")):
        if vendor in page.parents:
            continue
        text = page.read_text(encoding="utf-8")
        page.write_text(_localise_html(text, page, site_dir), encoding="utf-8")
    for sheet in sorted(site_dir.rglob("*.css")):
        if vendor in sheet.parents:
            continue
        text = sheet.read_text(encoding="utf-8")
        sheet.write_text(_localise_css(text), encoding="utf-8")
    # The vendored files are the package's own, copied above; the test suite scans them
    # (tests/test_datadocs.py), so a build scans what it wrote (3 s saved per run).
    left = [
        ref
        for file in iter_scanned_files(site_dir)
        if vendor not in file.parents
        for ref in scan_external_references(file, include_links=True)
    ]
    if left:
        raise OfflineDocsError(site_dir, left)


def _relative(target: Path, page: Path) -> str:
    return Path(os.path.relpath(target, page.parent)).as_posix()


def _localise_html(text: str, page: Path, site_dir: Path) -> str:
    edits: list[tuple[int, int, str]] = []
    removed: list[tuple[int, int]] = []  # whole regions dropped (edits inside them are moot)
    events = parse_html(text)
    unwrap_link_end = False
    footer: tuple[int, list[str]] | None = None  # start offset, hrefs inside

    for ev in events:
        if isinstance(ev, StartTag):
            if footer is not None and ev.tag == "a":
                footer[1].append(ev.get("href") or "")
            if ev.tag == "footer":
                footer = (ev.start, [])
            edit = _localise_tag(ev, text, page, site_dir)
            if edit is not None:
                edits.append(edit)
            if ev.tag == "a" and is_external(ev.get("href") or ""):
                unwrap_link_end = True
        elif isinstance(ev, EndTag):
            if ev.tag == "a" and unwrap_link_end:
                edits.append((ev.start, ev.end, ""))
                unwrap_link_end = False
            elif ev.tag == "footer" and footer is not None:
                start, hrefs = footer
                inner = text[start : ev.start].lower()
                if "newsletter" in inner and hrefs and all(is_external(h) for h in hrefs):
                    removed.append((start, ev.end))
                footer = None
        elif isinstance(ev, Text) and ev.raw_in == "style":
            new = _localise_css(ev.text)
            if new != ev.text:
                edits.append((ev.start, ev.start + len(ev.text), new))

    edits = [e for e in edits if not any(s <= e[0] and e[1] <= t for s, t in removed)]
    edits += [(s, t, "") for s, t in removed]
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _localise_tag(
    ev: StartTag, text: str, page: Path, site_dir: Path
) -> tuple[int, int, str] | None:
    raw = text[ev.start : ev.end]
    if ev.tag in ("script", "link"):
        attr = ev.attr("src" if ev.tag == "script" else "href")
        if attr is None or attr.value is None:
            return None
        files = CDN_ASSETS.get(attr.value.strip())
        if files is None:
            fixed = _fix_static_path(attr.value, page, site_dir)
            if fixed is None:
                return None
            files_rel = [fixed]
        else:
            files_rel = [_relative(site_dir / VENDOR_DIR / f, page) for f in files]
        if ev.tag == "script" and len(files_rel) > 1:
            raise ValueError("a <script> can be replaced by one file only")
        tags = []
        for rel in files_rel:
            new = raw
            drop = [a for a in ev.attrs if a.name in _DROPPED_ON_LOCALISE] if files else []
            spans = [(a.start, a.end, "") for a in drop] + [(attr.value_start, attr.value_end, rel)]
            for s, e, repl in sorted(spans, reverse=True):
                s, e = s - ev.start, e - ev.start
                if repl == "":  # an attribute: take the whitespace before it too
                    while s > 0 and new[s - 1].isspace():
                        s -= 1
                new = new[:s] + (html.escape(repl) if repl else "") + new[e:]
            tags.append(new)
        return ev.start, ev.end, "\n".join(tags)
    if ev.tag == "img" and is_external(ev.get("src") or ""):
        # The GX logo (a tracking pixel: it carries the data context id and the time): its alt
        # text stays, so the brand link home still shows.
        alt = ev.get("alt") or ""
        return (
            ev.start,
            ev.end,
            f'<span class="navbar-text p-0">{html.escape(alt)}</span>' if alt else "",
        )
    if ev.tag == "a" and is_external(ev.get("href") or ""):
        return ev.start, ev.end, ""  # unwrapped: the text stays, the link to the internet goes
    style = ev.attr("style")
    if style is not None and style.value is not None:
        new_css = _localise_css(style.value)
        if new_css != style.value:
            return style.value_start, style.value_end, html.escape(new_css)
    return None


def _fix_static_path(value: str, page: Path, site_dir: Path) -> str | None:
    """A relative link to ``static/...`` that misses (GX's favicon on validation pages) fixed."""
    value = value.strip()
    if is_external(value) or ":" in value.split("/")[0] or "static/" not in value:
        return None
    if (page.parent / value).resolve().exists():
        return None
    target = site_dir / ("static/" + value.split("static/", 1)[1])
    return _relative(target, page) if target.exists() else None


_CSS_IMPORT_RULE_RE = re.compile(r"@import\s+[^;]*;?", re.I)


def _localise_css(css: str) -> str:
    """External ``url(...)`` values become ``none``; external ``@import`` rules are dropped."""
    clean = css_without_comments(css)
    edits: list[tuple[int, int, str]] = []
    for m in CSS_URL_RE.finditer(clean):
        url = next(g for g in (m.group(2), m.group(3), m.group(4)) if g is not None)
        if is_external(url):
            edits.append((m.start(), m.end(), "none"))
    for m in _CSS_IMPORT_RULE_RE.finditer(clean):
        body = m.group()
        if any(is_external(u) for u in re.findall(r"""["'(]\s*["']?([^"')\s]+)""", body)):
            edits.append((m.start(), m.end(), ""))
    edits = [
        e for e in edits if not any(s <= e[0] and e[1] <= t and e != (s, t, r) for s, t, r in edits)
    ]
    for start, end, new in sorted(edits, reverse=True):
        css = css[:start] + new + css[end:]
    return css
