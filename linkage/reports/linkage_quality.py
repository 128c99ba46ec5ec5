"""The per-run linkage-quality report: one self-contained, offline HTML file of counts.

:func:`render_linkage_report` reads a published release and the Splink model that scored it and
writes a page for leadership and information-governance leads: the model's parameters (Splink's
match-weights and m/u charts), waterfall charts of sample links per grade, the cluster-size
distribution, estimated matches per agency pair, the overlap between agencies and the vetoes::

    render_linkage_report(release, model_dir / "splink_model.json", Path("reports/linkage.html"))

No person's values reach the page: the waterfall samples are read from the ``links`` table as
comparison levels and weights only (no record key, person id or compared value is selected) and
Splink draws them with ``remove_sensitive_data=True``; the compared values show as ``•••``.
Vega, Vega-Lite and Vega-Embed are inlined once from ``assets/``; a Content-Security-Policy
forbids any load. Counts from 1 to ``suppress_below - 1`` show as ``<N`` (0 stays 0); bars of
suppressed counts are drawn at the threshold's height, in grey. A table that hides exactly one
small count also withholds its smallest other count (secondary suppression), so its total does not
give the small one away. Not covered: differencing across tables (an agency's total against its
combinations) can still narrow a suppressed count; the page is for the linkage team and IG, not for
publication.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import duckdb
from markupsafe import Markup
from splink import DuckDBAPI, Linker

from linkage.reports.quality import Cell, Suppression, humanise, write_page

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).with_name("templates")
TEMPLATE_NAME = "linkage_quality.html.j2"
ASSETS = Path(__file__).with_name("assets")
VEGA_LIBRARIES = ("vega/vega.min.js", "vega-lite/vega-lite.min.js", "vega-embed/vega-embed.min.js")
GRADES = ("certain", "probable", "possible")
MASK = "•••"
LARGEST_CLUSTER_BUCKET = 10
"""Persons with this many records or more share the last bar of the cluster-size chart."""
MAX_COMBINATIONS = 30
"""The UpSet chart shows at most this many agency combinations (the largest)."""
VETOES = {
    "identifier_conflict": "both records hold a trusted number of one scheme and they differ",
    "date_of_birth_conflict": "dates of birth more than a year and more than one digit apart",
    "given_name_conflict": "given names that are not similar, short forms or initials",
    "cluster_conflict": "it would have put two conflicting records in one person",
    "cluster_size": "the person would have exceeded the maximum number of records",
    "weak_bridge": "the only, uncertain, link between two groups of records",
}


def render_linkage_report(
    release: Path,
    model_settings: Path,
    out: Path,
    *,
    suppress_below: int = 10,
    samples_per_grade: int = 2,
    seed: int = 0,
) -> Path:
    """Write the linkage-quality report of ``release`` (scored by ``model_settings``) to ``out``."""
    if suppress_below < 0:
        raise ValueError(f"suppress_below must be 0 (off) or more, not {suppress_below}")
    s, out = Suppression(suppress_below), Path(out)
    with duckdb.connect(str(release), read_only=True) as con:
        linker, work = _linker(con, Path(model_settings))
        try:
            context = {
                "suppress_below": suppress_below,
                **_header(con, s, Path(model_settings)),
                **_model(linker),
                "waterfalls": _waterfalls(con, linker, samples_per_grade, seed),
                **_cluster_sizes(con, s),
                **_agency_pairs(con, s),
                **_overlap(con, s),
                **_vetoes(con, s),
            }
        finally:
            work.close()
    context["libraries"] = _libraries()
    write_page(TEMPLATE_NAME, context, out)
    log.info("linkage report for run %s: %s", context["run_id"], out)
    return out


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[Any]:
    return con.execute(sql, params or []).fetchall()


def _linker(con: duckdb.DuckDBPyConnection, settings_path: Path) -> tuple[Linker, Any]:
    """A Linker over an empty table shaped like ``records``: the model without any data."""
    work = duckdb.connect()
    columns = ", ".join(f'"{c}" {t}' for c, t, *_ in _rows(con, "DESCRIBE records"))
    work.execute(f"CREATE TABLE model_only ({columns})")
    settings = json.loads(settings_path.read_text())
    settings["retain_matching_columns"] = settings["retain_intermediate_calculation_columns"] = True
    table = DuckDBAPI(connection=work).register("model_only", dataset_display_name="model_only")
    return Linker(table, settings, log_level=logging.WARNING, validate_settings=False), work


def _header(con: duckdb.DuckDBPyConnection, s: Suppression, settings: Path) -> dict[str, Any]:
    run_id, version, threshold = _rows(
        con, "SELECT run_id, model_version, cluster_threshold FROM runs ORDER BY started_at DESC"
    )[0]
    ((records, persons, scored, linked),) = _rows(
        con,
        "SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM persons), "
        "(SELECT count(*) FROM links), (SELECT count(*) FROM links WHERE linked)",
    )
    return {
        "run_id": run_id,
        "model_version": version or settings.parent.name,
        "cluster_threshold": threshold,
        "figures": [
            (s.count(records), "records"),
            (s.count(persons), "persons"),
            (s.count(linked), "linked pairs"),
            (s.count(scored), "scored pairs"),
        ],
    }


def _spec(chart: Any) -> Markup:
    """A SplinkChart's Vega-Lite spec as JSON safe inside a <script> element."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return None if isinstance(v, float) and not math.isfinite(v) else v

    text = json.dumps(clean(chart.chart_dict), default=str, ensure_ascii=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _number(v: float | None, fmt: str) -> str:
    if v is None:
        return "-"
    return format(v, fmt) if math.isfinite(v) else ("+∞" if v > 0 else "-∞")


def _model(linker: Linker) -> dict[str, Any]:
    weights = linker.visualisations.match_weights_chart()
    records: list[Any] = list(weights.raw_records)  # Splink's record types are loosely declared
    levels = [
        {
            "comparison": humanise(r.comparison_name),
            "level": r.label_for_charts,
            "gamma": r.comparison_vector_value,
            "m": _number(r.m_probability, ".4g"),
            "u": _number(r.u_probability, ".4g"),
            "weight": _number(r.log2_bayes_factor, "+.2f"),
        }
        for r in records
        if r.comparison_vector_value != -1
        and r.comparison_name != "probability_two_random_records_match"
    ]
    prior = next(r for r in records if r.comparison_sort_order == -1)
    return {
        "weights_spec": _spec(weights),
        "mu_spec": _spec(linker.visualisations.m_u_parameters_chart()),
        "levels": levels,
        "prior": f"{prior.probability_two_random_records_match:.3g}",
        "prior_weight": _number(prior.log2_bayes_factor, "+.2f"),
    }


def _waterfalls(
    con: duckdb.DuckDBPyConnection, linker: Linker, per_grade: int, seed: int
) -> list[dict[str, Any]]:
    """Per grade, sample links drawn as Splink waterfalls from their levels and weights only."""
    cols = [c for (c, *_) in _rows(con, "DESCRIBE links")]
    picked = [f'"{c}"' for c in cols if c.startswith(("gamma_", "mw_"))]
    picked += [  # older releases carry Bayes factors only
        f'log2("{c}") AS "mw_{c[3:]}"'
        for c in cols
        if c.startswith("bf_") and f"mw_{c[3:]}" not in cols
    ]
    out = []
    for grade in GRADES:
        rows = con.execute(
            f"SELECT match_weight, match_probability, veto, {', '.join(picked)} FROM links "
            "WHERE grade = ? ORDER BY hash(record_key_l || '|' || record_key_r || '|' || ?), "
            "match_weight LIMIT ?",
            [grade, str(seed), per_grade],
        )
        names = [d[0] for d in rows.description]
        records = [dict(zip(names, r, strict=True)) for r in rows.fetchall()]
        spec = None
        if records:
            chart = linker.visualisations.waterfall_chart(
                records, filter_nulls=False, remove_sensitive_data=True
            )
            data: list[Any] = list(chart.raw_records)
            for d in data:
                if d["column_name"] not in ("Prior", "Final score"):
                    d["value_l"] = d["value_r"] = MASK
            spec = _spec(chart)
        samples = [
            (i, _number(r["match_weight"], "+.2f"), f"{r['match_probability']:.4f}", r["veto"])
            for i, r in enumerate(records)
        ]
        out.append({"grade": grade, "spec": spec, "samples": samples})
    return out


def _svg(cls: str, w: float, h: float, title: str, body: list[str]) -> Markup:
    t = html.escape(title)
    head = f'<svg class="{cls}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
    return Markup(f'{head}aria-label="{t}"><title>{t}</title>{"".join(body)}</svg>')


def _bar(
    s: Suppression,
    cx: float,
    width: float,
    base: float,
    scale: float,
    label: str,
    n: int,
    cell: Cell | None = None,
) -> str:
    """One bar and its figure; a suppressed or withheld count is a grey bar at the threshold's
    height."""
    cell = cell or s.count(n)
    hidden, shown, e = cell.kind == "suppressed", cell.text, html.escape
    bh = scale * (s.below if hidden else n)
    return (
        f'<rect class="bar{" hidden-bar" if hidden else ""}" x="{cx - width / 2:.1f}" '
        f'y="{base - bh:.1f}" width="{width:.1f}" height="{bh:.1f}"><title>{e(label)}: '
        f'{e(shown)}</title></rect><text x="{cx:.1f}" y="{base - bh - 4:.1f}" '
        f'text-anchor="middle">{e(shown)}</text>'
    )


WITHHELD = Cell("withheld", "suppressed", "withheld: with the total it would reveal a small count")


def _withheld(s: Suppression, counts: list[int]) -> set[int]:
    """Secondary suppression: when a table hides exactly one small count, its smallest shown
    non-zero count is withheld too, so that the total does not give the small one away."""
    hidden = [i for i, n in enumerate(counts) if s.hidden(n)]
    shown = [i for i, n in enumerate(counts) if n > 0 and not s.hidden(n)]
    if len(hidden) != 1 or not shown:
        return set()
    return {min(shown, key=lambda i: (counts[i], i))}


def _cells(s: Suppression, counts: list[int]) -> list[Cell]:
    """Each count as a table cell, with small counts suppressed and their complement withheld."""
    withheld = _withheld(s, counts)
    return [WITHHELD if i in withheld else s.count(n) for i, n in enumerate(counts)]


def _high(s: Suppression, counts: list[int]) -> int:
    return max([s.below if s.hidden(n) else n for n in counts] + [1])


def _bars_svg(title: str, caption: str, bars: list[tuple[str, str, int]], s: Suppression) -> Markup:
    """A bar chart of ``(tick, label, count)``."""
    step, left, base, ph = 44, 16, 158, 140
    w, scale, e = left * 2 + step * len(bars), ph / _high(s, [n for *_, n in bars]), html.escape
    out = [
        f'<line class="axis" x1="{left}" x2="{w - left}" y1="{base}" y2="{base}"/>'
        f'<text x="{w / 2}" y="{base + 34}" text-anchor="middle">{e(caption)}</text>'
    ]
    cells = _cells(s, [n for *_, n in bars])
    for i, (tick, label, n) in enumerate(bars):
        cx = left + step * (i + 0.5)
        out.append(_bar(s, cx, step * 0.7, base, scale, label, n, cells[i]))
        out.append(f'<text x="{cx:.1f}" y="{base + 15}" text-anchor="middle">{e(tick)}</text>')
    return _svg("chart", w, base + 40, title, out)


def _cluster_sizes(con: duckdb.DuckDBPyConnection, s: Suppression) -> dict[str, Any]:
    top = LARGEST_CLUSTER_BUCKET
    counts = dict(
        _rows(con, "SELECT least(record_count, ?), count(*) FROM persons GROUP BY 1", [top])
    )
    total = sum(counts.values())
    rows = [
        (str(k) if k < top else f"{k}+", str(k) if k < top else f"{k} or more", counts.get(k, 0))
        for k in range(1, top + 1)
    ]
    return {
        "cluster_sizes": [
            (label, c, s.share(n, total) if c is not WITHHELD else Cell("-", "na"))
            for (_, label, n), c in zip(rows, _cells(s, [n for *_, n in rows]), strict=True)
        ],
        "cluster_svg": _bars_svg("Persons by number of records", "records per person", rows, s),
    }


def _agency_pairs(con: duckdb.DuckDBPyConnection, s: Suppression) -> dict[str, Any]:
    rows = _rows(
        con,
        """
        SELECT least(a.agency, b.agency) AS x, greatest(a.agency, b.agency) AS y,
               count(*) FILTER (grade = 'certain'), count(*) FILTER (grade = 'probable'),
               count(*) FILTER (grade = 'possible'), sum(match_probability)
        FROM links l JOIN records a ON a.record_key = l.record_key_l
        JOIN records b ON b.record_key = l.record_key_r
        GROUP BY 1, 2 ORDER BY 1, 2
        """,
    )
    return {
        "agency_pairs": [
            {"a": a, "b": b, "grades": [s.count(n) for n in (c, p, q)], "expected": _expected(e, s)}
            for a, b, c, p, q, e in rows
        ]
    }


def _expected(x: float, s: Suppression) -> Cell:
    """An expected number of matches (a sum of probabilities), suppressed like a count."""
    if x <= 0:
        return Cell("0", "zero")
    if s.below and x < s.below:
        return Cell(f"<{s.below}", "suppressed", f"suppressed: below {s.below}")
    return Cell(f"{x:,.1f}")


def _overlap(con: duckdb.DuckDBPyConnection, s: Suppression) -> dict[str, Any]:
    agencies = [a for (a,) in _rows(con, "SELECT DISTINCT agency FROM records ORDER BY 1")]
    by_count = dict(_rows(con, "SELECT agency_count, count(*) FROM persons GROUP BY 1"))
    per_agency = dict(_rows(con, "SELECT unnest(agencies), count(*) FROM persons GROUP BY 1"))
    combos = [
        (list(a), n) for a, n in _rows(con, "SELECT agencies, count(*) FROM persons GROUP BY 1")
    ]
    # Order by the figure as shown, so suppressed counts are not ranked among themselves.
    combos.sort(key=lambda c: (-(s.below if s.hidden(c[1]) else c[1]), len(c[0]), c[0]))
    cells = _cells(s, [n for _, n in combos])
    known = [
        (str(k), f"{k} agenc{'y' if k == 1 else 'ies'}", by_count.get(k, 0))
        for k in range(1, len(agencies) + 1)
    ]
    return {
        "known_to": [
            (label, c)
            for (_, label, _), c in zip(known, _cells(s, [n for *_, n in known]), strict=True)
        ],
        "known_svg": _bars_svg(
            "Persons by number of agencies", "agencies that know the person", known, s
        ),
        "combinations": [(" + ".join(a), c) for (a, _), c in zip(combos, cells, strict=True)],
        "hidden_combinations": max(0, len(combos) - MAX_COMBINATIONS),
        "upset_svg": _upset_svg(
            combos[:MAX_COMBINATIONS], cells[:MAX_COMBINATIONS], agencies, per_agency, s
        ),
    }


def _upset_svg(
    combos: list[tuple[list[str], int]],
    cells: list[Cell],
    agencies: list[str],
    sizes: dict[str, int],
    s: Suppression,
) -> Markup:
    """UpSet chart: a bar per agency combination over a dot matrix of its agencies."""
    left, col, base, row, e = 170, 38, 188, 22, html.escape
    w, scale = left + col * max(1, len(combos)) + 10, 170 / _high(s, [n for _, n in combos])
    ys = {a: base + 12 + row * (j + 0.5) for j, a in enumerate(agencies)}
    out = [f'<line class="axis" x1="{left}" x2="{w - 10}" y1="{base}" y2="{base}"/>']
    for j, (a, y) in enumerate(ys.items()):
        out.append(
            f'<rect class="stripe" x="0" y="{y - row / 2:.1f}" width="{w}" height="{row}" '
            f'opacity="{j % 2 * 0.5}"/><text x="{left - 8}" y="{y + 4:.1f}" '
            f'text-anchor="end">{e(a)} ({e(s.count(sizes.get(a, 0)).text)})</text>'
        )
    for i, ((members, n), cell) in enumerate(zip(combos, cells, strict=True)):
        cx = left + col * (i + 0.5)
        out.append(_bar(s, cx, col * 0.7, base, scale, " + ".join(members), n, cell))
        on = [ys[a] for a in members]
        out.append(f'<line class="link" x1="{cx}" x2="{cx}" y1="{min(on)}" y2="{max(on)}"/>')
        out += [
            f'<circle class="dot{" on" if a in members else ""}" cx="{cx}" cy="{y}" r="6"/>'
            for a, y in ys.items()
        ]
    title = "Persons by combination of agencies"
    return _svg("chart upset", w, base + 16 + row * len(agencies), title, out)


def _vetoes(con: duckdb.DuckDBPyConnection, s: Suppression) -> dict[str, Any]:
    counts = dict(_rows(con, "SELECT veto, count(*) FROM links WHERE veto IS NOT NULL GROUP BY 1"))
    ((possible, plain),) = _rows(
        con,
        "SELECT count(*) FILTER (grade = 'possible'), "
        "count(*) FILTER (grade = 'possible' AND veto IS NULL) FROM links",
    )
    reasons = list(VETOES) + sorted(set(counts) - set(VETOES))
    return {
        "vetoes": [(r, VETOES.get(r, ""), s.count(counts.get(r, 0))) for r in reasons],
        "possible": s.count(possible),
        "possible_plain": s.count(plain),
    }


def _libraries() -> Markup:
    """Vega, Vega-Lite and Vega-Embed as inline scripts (source-map comments dropped)."""
    scripts = []
    for name in VEGA_LIBRARIES:
        code = re.sub(r"//# sourceMappingURL=\S*\s*$", "", (ASSETS / name).read_text("utf-8"))
        if re.search(r"</script|<!--", code, re.I):
            raise ValueError(f"{name} cannot be inlined in a <script> element")
        scripts.append(f'<script data-library="{name.split("/")[0]}">{code}</script>')
    return Markup("\n".join(scripts))
