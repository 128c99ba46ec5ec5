"""The per-run data-quality report for information-governance (IG) leads: one offline HTML file.

For every run (published, blocked or failed) :func:`render_quality_report` writes a page that says
whether the run published and why, where every delivered row went (the books), why rows were
quarantined, how complete and valid each agency's fields are, and how this run compares with the
previous ones. It is built from the run log (:mod:`linkage.runlog`) alone, which holds counts and
never a person's values::

    from linkage import runlog
    runs = runlog.history(index_dir)
    render_quality_report(runs[-1], runs, Path("reports/quality.html"), data_docs=docs_index)

The page is self-contained so it opens on a server with no internet and reports nothing to anyone:
CSS is inline, charts are SVG drawn here in Python, there is no JavaScript, no web font and no
image file, and a ``Content-Security-Policy`` forbids any load should something slip in. It reads
on screen and prints on A4 (each section avoids page breaks inside tables and charts).

Small-number suppression (ISB 1523, "safe outputs"), with ``N = suppress_below`` (default 10):

* Every count of records (books, quarantine reasons, quality flags, the published index's size)
  from 1 to N-1 is shown as ``<N``. 0 stays 0. ``suppress_below=0`` turns suppression off, and the
  page says at the top that it must not leave the linkage team.
* A percentage whose count is suppressed is shown as the band that ``<N`` implies, never as a
  figure: 3 of 1,000 is ``<1.0%`` (``N/whole``, rounded up to 0.1). Completeness is a share of the
  accepted records; it is banded the same way when the records holding a value (``<1.0%``) *or*
  lacking one (``>99.0%``) number 1 to N-1, because the accepted count is on the page. A
  percentage of a suppressed whole is not shown (``-``).
* No back-calculation in a row: ``delivered = accepted + quarantined + blank + duplicates``, so
  when any of the four on the right is suppressed, ``delivered`` is *withheld* in that row and in
  the trend chart (its total minus the shown cells would give the suppressed one). The quarantine
  rate is ``quarantined / (accepted + quarantined)``, both shown, so it reveals nothing more.
  There are no total rows across agencies, and quarantine reasons have no total (a row may count
  under several reasons). The published index's record count is withheld when any agency's
  accepted or standardised count is suppressed, as it is their sum.
* Charts plot no suppressed or withheld value: the run shows as a grey band instead.
* Free text written by the pipeline (gate details, rejection reasons, contract problems) may
  quote figures: a whole number from 1 to N-1 directly followed by a record word
  (``3 accepted rows``) becomes ``<N``, and
  when the gate's agency (any agency, for a run-level gate) has a suppressed delivered, accepted or
  quarantined count (what the gates measure), percentages outside parentheses are withheld
  (parentheses hold configured limits, not measurements).

Not covered: a flag's complement ("records without the flag", ``accepted - count``) is not a
figure on the page and is not suppressed. All text from the run record (agency names, reason
codes, details, the override note) is HTML-escaped by the template's autoescaping, and SVG labels
are escaped here.
"""

from __future__ import annotations

import html
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from linkage.runlog import ExtractSummary, GateOutcome, RunRecord
from schemas.canonical import CANONICAL_FIELDS, IDENTIFIER_PREFIX

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).with_name("templates")
TEMPLATE_NAME = "quality.html.j2"
TREND_RUNS = 30
"""How many runs (this one included) the trend charts show."""

CellKind = Literal["", "zero", "suppressed", "withheld", "na"]

GATE_LABELS = {
    "required_agency": "Required agency delivered",
    "file_rejected": "File accepted",
    "quarantine_rate": "Quarantine rate",
    "volume": "Volume",
    "books": "Books balance",
    "contract": "Whole-extract contract rules",
}

STATUS_TEXT = {
    "published": "This run's release was published and is now the current release.",
    "blocked": (
        "Nothing was published: a publishing gate failed, so the previous release stays current."
    ),
    "failed": "The run failed before publishing: the previous release stays current.",
    "unchanged": (
        "Every extract was identical to the last published run's: nothing was linked or "
        "published, and the current release stays."
    ),
}

# Quality flags grouped as IG leads read them; identifier schemes are whatever the config declares.
FLAG_GROUPS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("Names", lambda f: f.startswith(("given_name_", "middle_names_", "family_name_"))),
    ("Date of birth", lambda f: f.startswith("dob_")),
    ("Sex", lambda f: f.startswith("sex_")),
    ("Address", lambda f: f.startswith("address_")),
    ("Postcode", lambda f: f.startswith("postcode_")),
    ("Identifiers", lambda f: f.endswith(("_invalid", "_placeholder", "_test_range"))),
)

FLAG_SUFFIXES = {
    "invalid": "invalid",
    "placeholder": "placeholder value",
    "test_range": "test range",
    "unparseable": "unparseable",
    "out_of_range": "out of range",
    "unmapped": "code not mapped",
}

ACRONYMS = {"nhs": "NHS", "ni": "NI", "pnc": "PNC", "dob": "DOB", "id": "ID", "uprn": "UPRN"}

STATUS_COLOURS = {
    "published": "#1f6f43", "unchanged": "#3b5b7a", "blocked": "#a15c00", "failed": "#b3261e"
}  # fmt: skip

_RECORD_WORDS = (
    r"accepted|quarantined|delivered|standardised|rejected|blank|duplicates?|exact|rows?|records?"
    r"|lines?|persons?|people"
)
_COUNT_IN_TEXT = re.compile(
    r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(?![\w,.%]|\.\d)(?=\s+(?:" + _RECORD_WORDS + r")\b)",
    re.I,
)
_PERCENT_IN_TEXT = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?%")


# ---------------------------------------------------------------------------------------------
# Suppression
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One figure as the page shows it, after suppression."""

    text: str
    kind: CellKind = ""
    title: str = ""
    bar: float | None = None
    """Width of a completeness bar in percent (never finer than the text shows), or None."""


@dataclass(frozen=True)
class Suppression:
    """Small-number suppression with threshold ``below`` (0 turns it off); see the module doc."""

    below: int

    def hidden(self, n: int | None) -> bool:
        """Whether count ``n`` is shown as ``<below``."""
        return self.below > 0 and n is not None and 0 < n < self.below

    def count(self, n: int | None) -> Cell:
        """A count of records: ``<N``, ``0`` or the number.

        >>> Suppression(10).count(3).text, Suppression(10).count(0).text
        ('<10', '0')
        >>> Suppression(10).count(12345).text, Suppression(0).count(3).text
        ('12,345', '3')
        """
        if n is None:
            return Cell("-", "na", "not recorded")
        if self.hidden(n):
            return Cell(f"<{self.below}", "suppressed", self._why())
        return Cell(f"{n:,}", "zero" if n == 0 else "")

    def share(self, part: int, whole: int) -> Cell:
        """``part`` as a percentage of ``whole``, banded when ``part`` is suppressed.

        >>> s = Suppression(10)
        >>> [s.share(*n).text for n in ((250, 1000), (3, 1000), (0, 1000), (3, 5))]
        ['25.0%', '<1.0%', '0%', '-']
        """
        if whole <= 0 or self.hidden(whole):
            return Cell("-", "na", "no figure: the whole is zero or suppressed")
        if part == 0:
            return Cell("0%", "zero")
        if self.hidden(part):
            return Cell(f"<{_ceil1(100 * self.below / whole)}%", "suppressed", self._why())
        return Cell(_pct(100 * part / whole))

    def completeness(self, share: float | None, whole: int) -> Cell:
        """A field's completeness (share of ``whole`` accepted records holding a value), with a bar.

        >>> s = Suppression(10)
        >>> [s.completeness(x, 1000).text for x in (0.5, 0.003, 0.995, 1.0, 0.0)]
        ['50.0%', '<1.0%', '>99.0%', '100%', '0%']
        """
        if share is None or whole <= 0 or self.hidden(whole):
            return Cell("-", "na", "no figure: no accepted records, or their count is suppressed")
        present = round(share * whole)
        missing = whole - present
        if self.hidden(present):
            upper = _ceil1(100 * self.below / whole)
            return Cell(f"<{upper}%", "suppressed", self._why(), bar=0.0)
        if self.hidden(missing):
            lower = _floor1(100 * (whole - self.below) / whole)
            return Cell(f">{lower:.1f}%", "suppressed", self._why("lacking a value"), bar=lower)
        value = 100 * present / whole
        return Cell(_pct(value), "zero" if present == 0 else "", bar=round(value, 1))

    def text(self, detail: str, *, withhold_percentages: bool) -> str:
        """Free text with small counts banded (and measured percentages withheld if asked).

        >>> Suppression(10).text("3 accepted rows = 1% of the median (allowed 50% to 200%)",
        ...                      withhold_percentages=True)
        '<10 accepted rows = [withheld] of the median (allowed 50% to 200%)'
        """
        if self.below <= 0:
            return detail

        def band(m: re.Match[str]) -> str:
            return f"<{self.below}" if self.hidden(int(m.group(1).replace(",", ""))) else m.group()

        out = _COUNT_IN_TEXT.sub(band, detail)
        if withhold_percentages:
            out = _outside_parentheses(out, lambda s: _PERCENT_IN_TEXT.sub("[withheld]", s))
        return out

    def _why(self, what: str = "") -> str:
        counted = f" {what}" if what else ""
        return f"suppressed: between 1 and {self.below - 1} records{counted}"


def _ceil1(x: float) -> str:
    return f"{math.ceil(round(x * 10, 6)) / 10:.1f}"


def _floor1(x: float) -> float:
    return math.floor(round(x * 10, 6)) / 10


def _pct(x: float) -> str:
    if x == 0:
        return "0%"
    if x == 100:
        return "100%"
    if 0 < x < 0.05:
        return "<0.1%"  # not 0.0%: some records are counted
    if 99.95 <= x < 100:
        return ">99.9%"  # not 100.0%: some are not
    return f"{x:.1f}%"


def _outside_parentheses(text: str, fix: Callable[[str], str]) -> str:
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "(" and depth == 0:
            parts.append(fix(text[start:i]))
            start = i
        if c in "()":
            depth = max(0, depth + (1 if c == "(" else -1))
            if depth == 0 and c == ")":
                parts.append(text[start : i + 1])
                start = i + 1
    tail = text[start:]
    parts.append(tail if depth else fix(tail))
    return "".join(parts)


def _book_counts(e: ExtractSummary) -> tuple[int, ...]:
    return (e.delivered, e.accepted, e.quarantined, e.blank_lines, e.duplicates, e.standardised)


def _delivered(e: ExtractSummary, s: Suppression) -> Cell:
    """Delivered, withheld when a component of ``delivered = A + Q + blank + dup`` is suppressed."""
    if not s.hidden(e.delivered) and any(
        s.hidden(n) for n in (e.accepted, e.quarantined, e.blank_lines, e.duplicates)
    ):
        return Cell(
            "withheld",
            "withheld",
            "withheld so that a suppressed count in this row cannot be worked out by subtraction",
        )
    return s.count(e.delivered)


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------


def humanise(code: str) -> str:
    """``id_nhs_number`` -> ``NHS number``; ``date_of_birth`` -> ``Date of birth``.

    >>> humanise("id_nhs_number"), humanise("date_of_birth"), humanise("dob_precision")
    ('NHS number', 'Date of birth', 'DOB precision')
    """
    code = code.removeprefix(IDENTIFIER_PREFIX)
    words = [ACRONYMS.get(w, w) for w in code.split("_") if w]
    if not words:
        return code
    first = words[0]
    return " ".join([first[:1].upper() + first[1:], *words[1:]])


def flag_label(flag: str) -> str:
    """``nhs_number_test_range`` -> ``NHS number: test range``.

    >>> flag_label("nhs_number_invalid"), flag_label("dob_out_of_range")
    ('NHS number: invalid', 'DOB: out of range')
    """
    for suffix, text in FLAG_SUFFIXES.items():
        if flag.endswith("_" + suffix):
            return f"{humanise(flag[: -len(suffix) - 1])}: {text}"
    return humanise(flag)


def _field_order(fields: Iterable[str]) -> list[str]:
    canonical = {f.name: i for i, f in enumerate(CANONICAL_FIELDS)}
    return sorted(
        set(fields),
        key=lambda f: (
            0 if f in canonical else 1 if f.startswith(IDENTIFIER_PREFIX) else 2,
            canonical.get(f, 0),
            f,
        ),
    )


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if t.tzinfo is not None:
        t = t.astimezone(UTC)
    return t.strftime("%d %b %Y %H:%M:%S") + (" UTC" if t.tzinfo is not None else "")


def _duration(start: str, end: str | None) -> str:
    try:
        seconds = (
            datetime.fromisoformat(end or "") - datetime.fromisoformat(start)
        ).total_seconds()
    except (TypeError, ValueError):
        return ""
    if seconds < 0:
        return ""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"


def _short_date(iso: str) -> str:
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        return iso[:10]
    return (t.astimezone(UTC) if t.tzinfo else t).strftime("%d %b")


# ---------------------------------------------------------------------------------------------
# Charts (inline SVG, no JavaScript)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    label: str
    """What the tooltip names the run by (run id and date)."""
    tick: str
    status: str
    value: float | None
    """None: no figure (no delivery, or suppressed/withheld when ``hidden``)."""
    hidden: bool = False
    shown: str = ""
    """The value as the tables show it."""


def _nice_step(span: float) -> float:
    raw = span / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw - 1e-12)


def _compact(v: float, percent: bool) -> str:
    if percent:
        return f"{v:.10g}%" if v == int(v) else f"{v:.2f}".rstrip("0").rstrip(".") + "%"
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.10g}"[:5].rstrip(".") + suffix
    return f"{v:.10g}"


def line_chart(title: str, points: Sequence[Point], *, percent: bool = False) -> Markup:
    """An SVG line chart of ``points`` with a y axis from 0, run dates on x, status-coloured dots.

    Hidden points are drawn as a grey band (never at their value); missing ones leave a gap.
    """
    w, h = 340, 190
    left, right, top, bottom = 50, 24, 12, 40
    pw, ph = w - left - right, h - top - bottom
    values = [p.value for p in points if p.value is not None and not p.hidden]
    high = max(values, default=0.0)
    step = _nice_step(high if high > 0 else (1.0 if percent else 4.0))
    if not percent:
        step = max(1.0, math.ceil(step))
    y_max = step * max(1, math.ceil(high / step - 1e-9))
    n = len(points)

    def x(i: int) -> float:
        return left + (pw / 2 if n == 1 else pw * i / (n - 1))

    def y(v: float) -> float:
        return top + ph - ph * v / y_max

    e = html.escape
    out = [
        f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{e(title)}" '
        f'preserveAspectRatio="xMidYMid meet">',
        f"<title>{e(title)}</title>",
    ]
    ticks = int(round(y_max / step))
    for k in range(ticks + 1):
        v = step * k
        yy = y(v)
        out.append(
            f'<line class="grid{" axis" if k == 0 else ""}" x1="{left}" x2="{left + pw}" '
            f'y1="{yy:.1f}" y2="{yy:.1f}"/>'
        )
        out.append(
            f'<text class="ytick" x="{left - 6}" y="{yy + 3.5:.1f}" text-anchor="end">'
            f"{e(_compact(v, percent))}</text>"
        )
    out.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}"/>')
    every = max(1, math.ceil(n / 6))
    for i, p in enumerate(points):
        if i % every == 0 or i == n - 1:
            if i != n - 1 and n - 1 - i < every:
                continue  # keep the last label clear of its neighbour
            out.append(
                f'<text class="xtick" x="{x(i):.1f}" y="{top + ph + 15}" text-anchor="middle">'
                f"{e(p.tick)}</text>"
            )
    for i, p in enumerate(points):
        if p.hidden:
            out.append(
                f'<rect class="hidden-band" x="{x(i) - 4:.1f}" y="{top}" width="8" height="{ph}">'
                f"<title>{e(p.label)}: {e(p.shown)}</title></rect>"
            )
    path, pen_down = [], False
    for i, p in enumerate(points):
        if p.value is None or p.hidden:
            pen_down = False
            continue
        path.append(f"{'L' if pen_down else 'M'}{x(i):.1f} {y(p.value):.1f}")
        pen_down = True
    if path:
        out.append(f'<path class="series" d="{" ".join(path)}"/>')
    for i, p in enumerate(points):
        if p.value is None or p.hidden:
            continue
        last = i == n - 1
        colour = STATUS_COLOURS.get(p.status, "#555")
        out.append(
            f'<circle class="{"dot current" if last else "dot"}" cx="{x(i):.1f}" '
            f'cy="{y(p.value):.1f}" r="{4.5 if last else 3}" fill="{colour}">'
            f"<title>{e(p.label)}: {e(p.shown)}</title></circle>"
        )
    if not values:
        out.append(
            f'<text class="empty" x="{left + pw / 2:.1f}" y="{top + ph / 2:.1f}" '
            f'text-anchor="middle">no figures to plot</text>'
        )
    out.append(
        f'<text class="xcaption" x="{left + pw / 2:.1f}" y="{h - 6}" text-anchor="middle">'
        f"run start date (UTC), oldest to this run</text>"
    )
    out.append("</svg>")
    return Markup("".join(out))


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------


def write_page(template: str, context: dict[str, Any], out: Path) -> None:
    """Render ``template`` (autoescaped, strict) to ``out``, written atomically."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    page = env.get_template(template).render(**context)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)


def render_quality_report(
    run: RunRecord,
    history: list[RunRecord],
    out_path: Path,
    *,
    suppress_below: int = 10,
    data_docs: Path | None = None,
) -> Path:
    """Write the run's data-quality report to ``out_path`` (one self-contained HTML file).

    Args:
        run: the run to report on.
        history: every recorded run, oldest first (``linkage.runlog.history``); ``run`` may be in
            it or not. The trend charts show the last ``TREND_RUNS`` runs ending with ``run``.
        out_path: the HTML file to write (its folder is created; the file is replaced atomically).
        suppress_below: counts from 1 to this minus 1 are shown as ``<N`` (0 turns it off).
        data_docs: the Great Expectations Data Docs ``index.html`` (or its folder), linked
            relatively from the report.

    Returns:
        ``out_path``.

    Example:
        >>> import tempfile
        >>> from linkage.runlog import ExtractSummary, RunRecord
        >>> e = ExtractSummary("gp", "gp.csv", None, 120, 110, 5, 0, 5, 110)
        >>> r = RunRecord("r1", "demo", "2024-05-01T02:00:00+00:00", None, "published", "c.yaml",
        ...               "m1", False, 0.9, (e,))
        >>> page = render_quality_report(r, [r], Path(tempfile.mkdtemp()) / "q.html")
        >>> "&lt;10" in page.read_text()
        True
    """
    if suppress_below < 0:
        raise ValueError(f"suppress_below must be 0 (off) or more, not {suppress_below}")
    out_path = Path(out_path)
    s = Suppression(suppress_below)
    context = _context(run, history, out_path, s, data_docs)
    write_page(TEMPLATE_NAME, context, out_path)
    log.info(
        "quality report for run %s (%s): %s, suppress_below=%d",
        run.run_id,
        run.status,
        out_path,
        suppress_below,
    )
    return out_path


def _context(
    run: RunRecord, history: list[RunRecord], out_path: Path, s: Suppression, data_docs: Path | None
) -> dict[str, Any]:
    extracts = list(run.extracts)
    agencies = [e.agency for e in extracts]
    # The gates measure rates and volumes from delivered, accepted and quarantined.
    measured_small = {
        e.agency: any(s.hidden(n) for n in (e.delivered, e.accepted, e.quarantined))
        for e in extracts
    }
    failed = [g for g in run.gates if not g.passed]
    records_withheld = any(s.hidden(e.accepted) or s.hidden(e.standardised) for e in extracts)
    records = (
        Cell("withheld", "withheld", "withheld: an agency's count in the sum is suppressed")
        if records_withheld and run.records is not None and not s.hidden(run.records)
        else s.count(run.records)
    )
    index_figures = [
        (records, "records"),
        (s.count(run.persons), "persons"),
        (s.count(run.links), "links"),
    ]
    return {
        "run": run,
        "status_label": run.status.upper(),
        "status_text": STATUS_TEXT.get(run.status, ""),
        "started": _when(run.started_at),
        "finished": _when(run.finished_at),
        "duration": _duration(run.started_at, run.finished_at),
        "index_figures": index_figures if run.status == "published" else [],
        "suppress_below": s.below,
        "failed_gates": len(failed),
        "passed_gates": len(run.gates) - len(failed),
        "gates": _gates(run.gates, measured_small, s),
        "books": [_books_row(e, s) for e in extracts],
        "rejected": [
            {
                "agency": e.agency,
                "source": e.source,
                "reason": s.text(e.rejected, withhold_percentages=measured_small[e.agency]),
            }
            for e in extracts
            if e.rejected
        ],
        "contract_problems": [
            {
                "agency": e.agency,
                "problem": s.text(p, withhold_percentages=measured_small[e.agency]),
            }
            for e in extracts
            for p in e.contract_problems
        ],
        "agencies": agencies,
        "quarantine": _quarantine(extracts, s),
        "completeness": _completeness(extracts, s),
        "flag_groups": _flags(extracts, s),
        "trends": _trends(run, history, s),
        "data_docs_href": _relative_href(data_docs, out_path) if data_docs else None,
    }


def _gates(
    gates: Iterable[GateOutcome], measured_small: dict[str, bool], s: Suppression
) -> list[dict[str, Any]]:
    rows = []
    for g in sorted(gates, key=lambda g: g.passed):  # failures first, otherwise as recorded
        small = measured_small.get(g.agency, False) if g.agency else any(measured_small.values())
        rows.append(
            {
                "code": g.gate,
                "label": GATE_LABELS.get(g.gate, humanise(g.gate)),
                "agency": g.agency,
                "passed": g.passed,
                "detail": s.text(g.detail, withhold_percentages=small),
            }
        )
    return rows


def _books_row(e: ExtractSummary, s: Suppression) -> dict[str, Any]:
    return {
        "agency": e.agency,
        "source": e.source,
        "sha256": e.sha256,
        "delivered": _delivered(e, s),
        "accepted": s.count(e.accepted),
        "quarantined": s.count(e.quarantined),
        "blank_lines": s.count(e.blank_lines),
        "duplicates": s.count(e.duplicates),
        "balanced": e.balanced,
        "rejected": bool(e.rejected),
    }


REJECTED_CELL = Cell("-", "na", "delivery rejected: no rows were checked")


def _quarantine(extracts: list[ExtractSummary], s: Suppression) -> list[dict[str, Any]]:
    reasons = sorted(
        {r for e in extracts for r in e.quarantine_reasons},
        key=lambda r: (-sum(e.quarantine_reasons.get(r, 0) for e in extracts), r),
    )
    rows = []
    for reason in reasons:
        rule, _, field_name = reason.partition(":")
        rows.append(
            {
                "rule": rule,
                "field": field_name,
                "cells": [
                    REJECTED_CELL if e.rejected else s.count(e.quarantine_reasons.get(reason, 0))
                    for e in extracts
                ],
            }
        )
    return rows


def _completeness(extracts: list[ExtractSummary], s: Suppression) -> list[dict[str, Any]]:
    fields = _field_order(f for e in extracts for f in e.completeness)
    return [
        {
            "field": f,
            "label": humanise(f),
            "cells": [
                REJECTED_CELL
                if e.rejected
                else s.completeness(e.completeness.get(f), e.accepted)
                if f in e.completeness
                else Cell("-", "na", "not recorded for this agency")
                for e in extracts
            ],
        }
        for f in fields
    ]


def _flags(extracts: list[ExtractSummary], s: Suppression) -> list[dict[str, Any]]:
    flags = {f for e in extracts for f in e.flags}
    groups = []
    for name, belongs in (*FLAG_GROUPS, ("Other", lambda f: True)):
        mine = sorted(f for f in flags if belongs(f))
        flags -= set(mine)
        if mine:
            rows = [
                {
                    "flag": f,
                    "label": flag_label(f),
                    "cells": [
                        (REJECTED_CELL, Cell(""))
                        if e.rejected
                        else (s.count(e.flags.get(f, 0)), s.share(e.flags.get(f, 0), e.accepted))
                        for e in extracts
                    ],
                }
                for f in mine
            ]
            groups.append({"name": name, "rows": rows})
    return groups


def _trends(run: RunRecord, history: list[RunRecord], s: Suppression) -> dict[str, Any]:
    runs = [r for r in history if r.run_id != run.run_id]
    runs = [*runs, run][-TREND_RUNS:]
    agencies = list(dict.fromkeys([e.agency for e in run.extracts]))
    for r in runs:
        agencies.extend(e.agency for e in r.extracts if e.agency not in agencies)
    charts = []
    for agency in agencies:
        delivered: list[Point] = []
        accepted: list[Point] = []
        rate: list[Point] = []
        for r in runs:
            e = next((x for x in r.extracts if x.agency == agency), None)
            label = f"{r.run_id} ({_short_date(r.started_at)}, {r.status})"
            tick = _short_date(r.started_at)
            if e is None:
                for series in (delivered, accepted, rate):
                    series.append(Point(label, tick, r.status, None, shown="no delivery"))
                continue
            if e.rejected:
                label += ": delivery rejected"
            d = _delivered(e, s)
            delivered.append(
                Point(
                    label, tick, r.status, e.delivered, d.kind in ("suppressed", "withheld"), d.text
                )
            )
            a = s.count(e.accepted)
            accepted.append(Point(label, tick, r.status, e.accepted, s.hidden(e.accepted), a.text))
            checked = e.accepted + e.quarantined
            q = s.share(e.quarantined, checked)
            rate.append(
                Point(
                    label,
                    tick,
                    r.status,
                    100 * e.quarantined / checked if checked else None,
                    s.hidden(e.quarantined) or s.hidden(checked),
                    q.text if checked else "no rows checked",
                )
            )
        charts.append(
            {
                "agency": agency,
                "charts": [
                    {
                        "title": "Delivered rows",
                        "latest": delivered[-1].shown,
                        "svg": line_chart(f"{agency}: delivered rows per run", delivered),
                    },
                    {
                        "title": "Accepted rows",
                        "latest": accepted[-1].shown,
                        "svg": line_chart(f"{agency}: accepted rows per run", accepted),
                    },
                    {
                        "title": "Quarantine rate",
                        "latest": rate[-1].shown,
                        "svg": line_chart(
                            f"{agency}: quarantined share of rows checked, per run",
                            rate,
                            percent=True,
                        ),
                    },
                ],
            }
        )
    return {
        "runs": len(runs),
        "first": _when(runs[0].started_at) if runs else "-",
        "agencies": charts,
    }


def _relative_href(target: Path, out_path: Path) -> str:
    target = Path(target)
    if target.is_dir() or not target.suffix:
        target = target / "index.html"
    rel = os.path.relpath(target.absolute(), out_path.absolute().parent)
    return quote(Path(rel).as_posix())
