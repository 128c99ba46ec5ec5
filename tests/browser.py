"""Headless Chromium for tests, with the network cut off and every attempt to use it recorded.

Debian's ``/usr/bin/chromium`` is driven through Python Playwright (``playwright install``, a
browser download, cannot work here). Every request whose URL is not ``file://`` or
``http://127.0.0.1`` is aborted and recorded, so a test can assert that opening a page tried to
reach nothing::

    from tests.browser import BROWSER_SKIP_REASON, offline_browser

    @pytest.mark.skipif(BROWSER_SKIP_REASON is not None, reason=BROWSER_SKIP_REASON or "")
    def test_page(tmp_path):
        with offline_browser() as browser:
            report = browser.open(tmp_path / "index.html", screenshot=Path("/tmp/page.png"))
        assert report.blocked == [] and report.console_errors == [] and report.styled

Defence in depth: Chromium is also started with ``--host-resolver-rules`` mapping every host name
except ``localhost``/``127.0.0.1`` to "not found", so a connection the interception does not see
(a ``preconnect`` or DNS-prefetch hint, say) cannot resolve a name either.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]

ALLOWED_PREFIXES = ("file://", "http://127.0.0.1:", "http://127.0.0.1/", "data:", "blob:", "about:")
"""Requests that may go ahead; everything else is aborted and recorded."""


def _skip_reason() -> str | None:
    missing = []
    if not (CHROMIUM.is_file() or shutil.which(str(CHROMIUM))):
        missing.append(f"{CHROMIUM} (apt-get install -y chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the Python package playwright (a dev dependency)")
    if missing and os.environ.get("CI"):
        # CI installs both (.ci/run): there a missing browser is a failure, never a quiet skip.
        return None
    return f"browser tests need {' and '.join(missing)}" if missing else None


BROWSER_SKIP_REASON: str | None = _skip_reason()
"""Why browser tests cannot run here, or None when Chromium and Playwright are both present."""


@dataclass(frozen=True)
class BlockedRequest:
    url: str
    resource_type: str
    page: str


# Computed-style probe: what Bootstrap (or any real style sheet) changes from Chromium's defaults.
# Defaults: body margin 8px and font-family "Times New Roman" (serif); table cells have no border.
# (Whether a <link> loaded cannot be read from the DOM on file:// pages: link.sheet is set even
# for a failed load and cssRules is cross-origin; failed loads show in failed_requests instead.)
_STYLE_PROBE = """
async () => {
  await document.fonts.ready;
  const body = getComputedStyle(document.body);
  const cell = document.querySelector('.table td, .table th');
  const cs = cell ? getComputedStyle(cell) : null;
  const icon = document.querySelector('.fas, .fa-solid');
  return {
    body_font_family: body.fontFamily,
    body_margin: body.margin,
    table_cell_border_top: cs ? cs.borderTopWidth + ' ' + cs.borderTopStyle : null,
    icon_font_family: icon ? getComputedStyle(icon).fontFamily : null,
    stylesheets: document.querySelectorAll('link[rel~="stylesheet"], style').length,
    fonts: [...document.fonts].map(f => ({family: f.family.replace(/"/g, ''), status: f.status})),
  };
}
"""


@dataclass
class PageReport:
    """What opening one page did."""

    url: str
    blocked: list[BlockedRequest]
    console_errors: list[str]
    page_errors: list[str]
    failed_requests: list[str]
    style: dict[str, Any]
    screenshot: Path | None = None

    @property
    def styled(self) -> bool:
        """Style sheets applied: body margin and font changed from the defaults, tables ruled."""
        s = self.style
        font = (s.get("body_font_family") or "").lower().replace('"', "")
        default_font = font in ("", "serif") or font.startswith("times")
        cell = s.get("table_cell_border_top")
        return (
            s.get("body_margin") == "0px"
            and not default_font
            and (cell is None or not cell.endswith(" none"))
        )

    def loaded_fonts(self) -> set[str]:
        return {f["family"] for f in self.style.get("fonts", []) if f["status"] == "loaded"}


@dataclass
class OfflineBrowser:
    """A Chromium context with the network blocked; see :func:`offline_browser`."""

    context: Any
    blocked: list[BlockedRequest] = field(default_factory=list)

    def open(
        self,
        target: Path | str,
        *,
        screenshot: Path | None = None,
        wait_for: str | None = None,
        settle_ms: int = 300,
    ) -> PageReport:
        """Open a local file (or a 127.0.0.1 URL) and report what happened.

        ``wait_for``: a CSS selector to wait for before measuring (e.g. a chart's ``svg``).
        """
        url = target if isinstance(target, str) else Path(target).absolute().as_uri()
        page = self.context.new_page()
        console_errors: list[str] = []
        page_errors: list[str] = []
        failed: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.on(
            "requestfailed",
            lambda r: (
                failed.append(f"{r.url} ({r.failure})") if not _is_blocked(self, r.url) else None
            ),
        )
        already_blocked = len(self.blocked)
        try:
            page.goto(url, wait_until="load")
            if wait_for:
                page.wait_for_selector(wait_for, state="attached")
            page.wait_for_timeout(settle_ms)  # late requests: lazy fonts, scripts run on load
            style = page.evaluate(_STYLE_PROBE)
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            page.close()
        return PageReport(
            url=url,
            blocked=self.blocked[already_blocked:],
            console_errors=console_errors,
            page_errors=page_errors,
            failed_requests=failed,
            style=style,
            screenshot=screenshot,
        )


def _is_blocked(browser: OfflineBrowser, url: str) -> bool:
    return any(b.url == url for b in browser.blocked)


@contextmanager
def offline_browser(
    viewport: tuple[int, int] = (1280, 900), color_scheme: str = "light"
) -> Iterator[OfflineBrowser]:
    """Start Chromium with a fresh profile and every non-local request aborted and recorded.

    ``color_scheme="dark"`` emulates a dark desktop (pages' ``prefers-color-scheme`` CSS).
    """
    if BROWSER_SKIP_REASON is not None:
        raise RuntimeError(BROWSER_SKIP_REASON)
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile,
        sync_playwright() as pw,
    ):
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": viewport[0], "height": viewport[1]},
            color_scheme=color_scheme,
            service_workers="block",
        )
        browser = OfflineBrowser(context)

        def route(route: Any) -> None:
            request = route.request
            if request.url.startswith(ALLOWED_PREFIXES):
                route.continue_()
                return
            try:
                page = request.frame.url
            except Exception:  # a request from a worker has no frame
                page = ""
            browser.blocked.append(BlockedRequest(request.url, request.resource_type, page))
            route.abort("blockedbyclient")

        def websocket(ws: Any) -> None:
            if ws.url.startswith(("ws://127.0.0.1:", "ws://127.0.0.1/")):
                ws.connect_to_server()
                return
            browser.blocked.append(BlockedRequest(ws.url, "websocket", ""))
            ws.close()

        context.route("**/*", route)
        context.route_web_socket("**/*", websocket)
        try:
            yield browser
        finally:
            context.close()
