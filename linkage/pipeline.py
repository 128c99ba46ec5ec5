"""The steps of a run as plain functions with explicit inputs; ``flows/`` wraps each in a task.

Each step writes its output under the run's folder and returns a small typed result (paths and
counts, never person rows), so the orchestrator only ever passes those around.

    extract -> validate -> standardise   (per agency: the intake, its books in an ExtractSummary)
    gates -> [blocked: record and stop] -> model -> link -> publish -> record and report
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from linkage import runlog
from linkage.analyst import load_key, write_analyst_release
from linkage.cluster import ClusterPolicy
from linkage.config import ProjectConfig
from linkage.contracts import load_contract
from linkage.db import connect, sql_str
from linkage.errors import FileRejected, LinkageError, ModelError
from linkage.gates import check_gates
from linkage.incremental import (
    intake_fingerprint,
    known_lines,
    matching_fingerprint,
    split_known,
    write_with_known,
)
from linkage.link import LinkResult, load_records, predict_and_cluster
from linkage.model import ModelArtefact, load_model, train_model
from linkage.publish import PublishResult, current_release, publish
from linkage.runlog import ExtractSummary, GateOutcome, RunRecord
from linkage.sources import ExtractResult, read_extract
from linkage.sources.common import DeliveryMissing
from linkage.standardise import (
    StandardiseResult,
    canonical_schema,
    count_flags,
    standardise_extract,
)
from linkage.validate import ValidationResult, validate_extract
from schemas.canonical import CANONICAL_FIELDS, identifier_column

log = logging.getLogger(__name__)

# Canonical fields whose completeness the data-quality report shows.
COMPLETENESS_FIELDS = tuple(
    f.name
    for f in CANONICAL_FIELDS
    if f.name not in ("record_key", "agency", "source_record_id", "quality_flags")
)


class PublishBlocked(LinkageError):
    """A gate failed and nobody overrode it: the previous release stays current."""

    exit_code = 3


@dataclass(frozen=True)
class RunContext:
    run_id: str
    started_at: datetime
    run_dir: Path
    full: bool = False
    """Validate, standardise and score every record, even those unchanged since the current
    release (otherwise they are reused: :mod:`linkage.incremental`)."""


def new_run(config: ProjectConfig, full: bool = False) -> RunContext:
    """Create the run's private working folder (0700: it holds person records)."""
    started = datetime.now(UTC)
    # Sorts in start order (to the microsecond): the run log and the release history rely on it.
    run_id = started.strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(2)
    run_dir = config.paths.work_dir / run_id
    run_dir.mkdir(parents=True, mode=0o700)
    os.chmod(config.paths.work_dir, 0o700)
    return RunContext(run_id, started, run_dir, full)


# --- intake: extract, validate, standardise -------------------------------------------------------


@dataclass(frozen=True)
class Intake:
    """One agency's extract after validation and standardisation: where it went, and its books."""

    summary: ExtractSummary
    standardised: Path | None
    """The canonical records to link, or None when the delivery was rejected or missing."""
    gx_result_path: Path | None = None
    """The sanitised Great Expectations result (for Data Docs)."""


def extract(config: ProjectConfig, agency: str, run: RunContext) -> ExtractResult | str:
    """Read one agency's extract against its contract into ``<run>/extracts/``.

    Returns the extract, or the reason the whole delivery was refused (``code: detail``); a
    transient source error is raised so that the orchestrator can retry.
    """
    spec = config.agency(agency)
    out = run.run_dir / "extracts"
    out.mkdir(exist_ok=True, mode=0o700)
    try:
        return read_extract(spec, load_contract(spec.contract), out, config.duckdb)
    except FileRejected as e:
        log.warning("%s: delivery rejected (%s)", agency, e.reason)
        return f"{e.reason}: {e.detail}"
    except DeliveryMissing as e:
        log.warning("%s: no delivery", agency)
        return f"missing_delivery: {e}"


def current_run(config: ProjectConfig) -> tuple[Path | None, RunRecord | None]:
    """The current release and the run that published it (None, None before the first)."""
    release = current_release(config.paths.index_dir)
    if release is None:
        return None, None
    runs = runlog.history(config.paths.index_dir)
    return release, next(
        (r for r in reversed(runs) if r.status == "published" and r.release == str(release)), None
    )


def reusable_release(config: ProjectConfig, agency: str, run: RunContext) -> Path | None:
    """The current release, when its records of ``agency`` may be reused for rows delivered
    unchanged: it was built with the same intake fingerprint, and the run is not a full one."""
    if run.full or not config.model.incremental:
        return None
    release, last = current_run(config)
    books = next((e for e in last.extracts if e.agency == agency), None) if last else None
    if books is None or books.rejected or books.intake is None:
        return None
    same = books.intake == intake_fingerprint(config.agency(agency), config.identifiers)
    return release if same else None


def _digests(run: RunContext, agency: str) -> Path:
    """Where an incremental intake's validation leaves each accepted row's digest."""
    return run.run_dir / "validation" / f"{agency}.digests.parquet"


def validate(config: ProjectConfig, extracted: ExtractResult, run: RunContext) -> ValidationResult:
    """Check the accepted rows against the contract's row rules; quarantine the failures.

    Rows delivered exactly as the current release holds them are checked only by the rules
    that depend on other rows or on the whole extract (:func:`reusable_release`)."""
    spec = config.agency(extracted.agency)
    contract = load_contract(spec.contract)
    out = run.run_dir / "validation"
    out.mkdir(exist_ok=True, mode=0o700)
    known = None
    if (release := reusable_release(config, extracted.agency, run)) is not None:
        con = connect(":memory:", config)
        try:
            known = known_lines(
                con, extracted.accepted_path, contract.column_names, release, extracted.agency,
                _digests(run, extracted.agency),
            )  # fmt: skip
        finally:
            con.close()
    return validate_extract(extracted, contract, out, known)


def standardise(
    config: ProjectConfig, extracted: ExtractResult, validated: ValidationResult, run: RunContext
) -> Intake:
    """Map the valid rows to the canonical record and close the agency's books.

    A row delivered exactly as the current release holds it keeps the release's record
    (:func:`reusable_release`); the others are standardised."""
    agency = extracted.agency
    spec = config.agency(agency)
    out = run.run_dir / "standardised"
    out.mkdir(exist_ok=True, mode=0o700)
    final = out / f"{agency}.parquet"
    fresh = out / f"{agency}.fresh.parquet"
    con = connect(":memory:", config)
    try:
        columns = load_contract(spec.contract).column_names
        release = reusable_release(config, agency, run)
        reused = split_known(
            con, validated.accepted_path, columns, release, agency, fresh, _digests(run, agency)
        )
        new = standardise_extract(fresh, spec, config.identifiers, out / f"{agency}.new.parquet")
        if release is not None and reused:
            write_with_known(con, new.path, release, agency, final)
            std = StandardiseResult(final, *count_flags(final))
        else:
            os.replace(new.path, final)
            std = replace(new, path=final)
    finally:
        con.close()
    for p in (fresh, new.path):
        p.unlink(missing_ok=True)
    if reused:
        log.info("%s: %d rows delivered as before, their records reused", agency, reused)
    summary = ExtractSummary(
        agency=agency,
        source=extracted.source,
        sha256=extracted.sha256,
        delivered=extracted.delivered,
        accepted=validated.accepted,
        quarantined=extracted.quarantined + validated.quarantined,
        blank_lines=extracted.blank_lines,
        duplicates=extracted.duplicates,
        standardised=std.rows,
        flags=dict(std.flags),
        quarantine_reasons=_reasons(extracted, validated),
        completeness=completeness(std),
        # The quarantine share has its own gate (linkage.gates), so it is not repeated here.
        contract_problems=list(validated.rule_problems),
        reused=reused,
        intake=intake_fingerprint(spec, config.identifiers),
    )
    return Intake(summary, std.path, validated.gx_result_path)


def rejected_intake(agency: str, reason: str) -> Intake:
    """The books of a delivery refused as a whole: nothing accepted, nothing to link."""
    summary = ExtractSummary(
        agency=agency, source="", sha256=None, delivered=0, accepted=0, quarantined=0,
        blank_lines=0, duplicates=0, standardised=0, rejected=reason,
    )  # fmt: skip
    return Intake(summary, None)


def _reasons(extracted: ExtractResult, validated: ValidationResult) -> dict[str, int]:
    """Quarantined rows per reason: the reader's (malformed lines) and the contract's rules."""
    reasons = dict(validated.reasons)
    if extracted.quarantined:
        counts = (
            pl.scan_parquet(extracted.quarantine_path)
            .filter(~pl.col("reason").str.contains(":"))
            .group_by("reason")
            .len()
            .collect()
        )
        for reason, n in counts.iter_rows():
            reasons[reason] = reasons.get(reason, 0) + n
    return dict(sorted(reasons.items()))


def completeness(std: StandardiseResult) -> dict[str, float]:
    """Share of records holding each canonical field."""
    if std.rows == 0:
        return {}
    row = (
        pl.scan_parquet(std.path)
        .select(pl.col(COMPLETENESS_FIELDS).is_not_null().mean())
        .collect()
        .row(0, named=True)
    )
    return {k: round(float(v), 4) for k, v in row.items()}


# --- gates, carry-forward -------------------------------------------------------------------------


def check(config: ProjectConfig, intakes: list[Intake]) -> list[GateOutcome]:
    """Every publishing gate, against the run log's history."""
    thresholds: dict[str, float | None] = {}
    for a in config.agencies:
        value = load_contract(a.contract).custom.get("quarantineThreshold")
        thresholds[a.name] = float(value) if value is not None else None
    history = runlog.history(config.paths.index_dir)
    return check_gates(config, [i.summary for i in intakes], thresholds, history)


def same_as_last_published(
    config: ProjectConfig, run: RunContext, intakes: list[Intake]
) -> RunRecord | None:
    """The run that published the current release, if every extract now is byte-identical to
    the one it published and what decides the links (model, thresholds, clustering rules) is
    unchanged (a duplicate delivery, bad-inputs C1); else None. A full run never stops here."""
    _, last = current_run(config)
    if run.full or last is None:
        return None
    before = {e.agency: e.sha256 for e in last.extracts if not e.rejected}
    now = {i.summary.agency: i.summary.sha256 for i in intakes if not i.summary.rejected}
    try:
        model = load_model(config)
    except ModelError:
        return None
    if None in now.values() or now != before or matching(config, model) != last.matching:
        return None
    return last


def carry_forward(config: ProjectConfig, intake: Intake, run: RunContext) -> Intake:
    """Under an override, an agency whose delivery failed keeps its records of the current release.

    Its books say so (``rejected`` keeps the reason; ``standardised`` counts the carried records).
    """
    release = current_release(config.paths.index_dir)
    agency = intake.summary.agency
    if release is None:
        return intake
    out = run.run_dir / "standardised" / f"{agency}.carried.parquet"
    out.parent.mkdir(exist_ok=True, mode=0o700)
    columns = ", ".join(canonical_schema(config.identifiers).names())
    con = connect(":memory:", config)
    try:
        con.execute(f"ATTACH {sql_str(release)} AS cur (READ_ONLY)")
        con.execute(
            f"COPY (SELECT {columns} FROM cur.records WHERE agency = ? ORDER BY record_key) "
            f"TO {sql_str(out)} (FORMAT parquet)",
            [agency],
        )
        (n,) = con.sql(f"SELECT count(*) FROM read_parquet({sql_str(out)})").fetchall()[0]
    finally:
        con.close()
    log.warning("%s: carrying forward %d records from %s", agency, n, release.name)
    summary = replace(
        intake.summary, standardised=n, rejected=f"{intake.summary.rejected} (carried forward)"
    )
    return Intake(summary, out, intake.gx_result_path)


# --- model, link, publish -------------------------------------------------------------------------


def train(config: ProjectConfig, standardised: list[Path], run: RunContext) -> ModelArtefact:
    """Train a new model version on the standardised records of this run."""
    con = connect(run.run_dir / "train.duckdb", config)
    try:
        load_records(con, standardised, ordered=True)
        return train_model(con, "records", config)
    finally:
        con.close()


def model_for_run(
    config: ProjectConfig, standardised: list[Path], run: RunContext
) -> tuple[ModelArtefact, bool]:
    """The saved model, or, on a project's first run only, a newly trained one (and True)."""
    try:
        return load_model(config), False
    except ModelError:
        if config.model.version:
            raise
        log.warning("no trained model in %s: training one now (first run)", config.model.dir)
        return train(config, standardised, run), True


def cluster_policy(config: ProjectConfig) -> ClusterPolicy:
    """The clustering rules of ``config``: trusted number columns, thresholds, size cap."""
    return ClusterPolicy(
        trusted=tuple(
            identifier_column(s)
            for s, spec in sorted(config.identifiers.items())
            if spec.is_trusted
        ),
        identifiers=tuple(
            identifier_column(s) for s, spec in sorted(config.identifiers.items()) if spec.compare
        ),
        cluster_threshold=config.model.cluster_threshold,
        certain_threshold=config.model.certain_threshold,
        max_cluster_size=config.model.max_cluster_size,
        household_guards=config.model.household_guards,
    )


def matching(config: ProjectConfig, model: ModelArtefact) -> str:
    """The matching fingerprint of ``config`` with ``model`` (what decides the links)."""
    return matching_fingerprint(model, cluster_policy(config), config.model.predict_threshold)


def link(
    config: ProjectConfig,
    model: ModelArtefact,
    standardised: list[Path],
    run: RunContext,
) -> LinkResult:
    """Predict and cluster into the run's work database: incrementally against the current
    release when it was linked with the same model and rules (and the run is not a full one)."""
    fingerprint = matching(config, model)
    previous, last = current_run(config)
    incremental = (
        config.model.incremental
        and not run.full
        and last is not None
        and last.matching == fingerprint
    )
    if previous is not None and not incremental:
        why = "asked for" if run.full else "the model or the matching rules changed"
        log.info("full run (%s)", why if config.model.incremental else "model.incremental is off")
    work_db = run.run_dir / "work.duckdb"
    con = connect(work_db, config)
    try:
        load_records(con, standardised, common_names=model.common_names)
        result = predict_and_cluster(
            con,
            model,
            cluster_policy(config),
            predict_threshold=config.model.predict_threshold,
            work_db=work_db,
            max_pairs_per_rule=config.model.max_pairs_per_rule,
            previous=previous if incremental else None,
            identifier_columns=[identifier_column(s) for s in sorted(config.identifiers)],
        )
    finally:
        con.close()
    return replace(result, matching=fingerprint)


def record(
    config: ProjectConfig,
    run: RunContext,
    intakes: list[Intake],
    gates: list[GateOutcome],
    *,
    status: runlog.RunStatus,
    override: str | None = None,
    model: ModelArtefact | None = None,
    trained: bool = False,
    linked: LinkResult | None = None,
) -> RunRecord:
    """This run's record (not yet saved)."""
    return RunRecord(
        run_id=run.run_id,
        project=config.project,
        started_at=run.started_at.isoformat(timespec="seconds"),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        status=status,
        config_path=str(config.config_path),
        model_version=model.version if model else None,
        trained_this_run=trained,
        cluster_threshold=config.model.cluster_threshold,
        extracts=tuple(i.summary for i in intakes),
        gates=tuple(gates),
        override=override,
        report=str(report_path(config, run.run_id)),
        link_grades=linked.clusters.grades if linked else {},
        vetoes=linked.clusters.vetoes if linked else {},
        link_mode=linked.mode if linked else None,
        changes=linked.changes if linked else {},
        matching=linked.matching if linked else None,
    )


def publish_run(config: ProjectConfig, run_record: RunRecord, linked: LinkResult) -> RunRecord:
    """Check the books, publish the release atomically (and its pseudonymised analyst release
    when configured) and save the run's record."""
    analyst = config.analyst_release
    if analyst is not None:
        load_key(analyst)  # before publishing: a missing key must not leave half a release
    history = runlog.history(config.paths.index_dir)
    con = connect(linked.work_db, config)
    try:
        published: PublishResult = publish(
            con, config.paths.index_dir, run_record, history, keep=config.releases.keep,
            base=linked.base,
        )  # fmt: skip
    finally:
        con.close()
    if analyst is not None:
        write_analyst_release(
            published.release_path,
            config.paths.index_dir,
            analyst,
            lambda: connect(":memory:", config),
        )
    runlog.save(config.paths.index_dir, published.record)
    return published.record


def block(config: ProjectConfig, run_record: RunRecord) -> None:
    """Save a blocked run's record, then stop the run with the gates that failed."""
    runlog.save(config.paths.index_dir, run_record)
    failed = [g for g in run_record.gates if not g.passed]
    reasons = "; ".join(f"{g.gate} ({g.agency or 'run'}): {g.detail}" for g in failed)
    raise PublishBlocked(
        f"run {run_record.run_id} not published, the previous release stays current: {reasons}. "
        f"Report: {run_record.report}. "
        "To publish anyway, rerun with --override 'who approved it and why'"
    )


def close_run(config: ProjectConfig, run: RunContext) -> Path | None:
    """Keep the quarantined rows in the restricted quarantine store; remove the working files.

    Data minimisation: after the run only the published index and the quarantine store hold
    person records (the source extracts stay where the agencies delivered them).
    """
    kept = None
    extracts = run.run_dir / "extracts"
    quarantined = sorted(extracts.glob("*.quarantine.parquet")) if extracts.exists() else []
    if quarantined:
        kept = config.paths.quarantine_dir / run.run_id
        kept.mkdir(parents=True, mode=0o700)
        os.chmod(config.paths.quarantine_dir, 0o700)
        for f in quarantined:
            os.replace(f, kept / f.name)
    shutil.rmtree(run.run_dir)
    return kept


# --- reports --------------------------------------------------------------------------------------


def report_path(config: ProjectConfig, run_id: str) -> Path:
    return config.paths.reports_dir / run_id / "quality.html"


def report(config: ProjectConfig, run_record: RunRecord, intakes: list[Intake]) -> Path:
    """The run's data-quality report, its Great Expectations Data Docs and, for a published
    run, its linkage-quality report, all fully offline.

    Written to ``reports_dir/<run_id>/`` (``quality.html``, ``data-docs/``, ``linkage.html``);
    counts only.
    """
    from linkage.reports.datadocs import build_data_docs
    from linkage.reports.linkage_quality import render_linkage_report
    from linkage.reports.quality import render_quality_report

    out = config.paths.reports_dir / run_record.run_id
    out.mkdir(parents=True, exist_ok=True)
    results = [
        json.loads(i.gx_result_path.read_text()) for i in intakes if i.gx_result_path is not None
    ]
    docs = (
        build_data_docs(results, out / "data-docs", site_name=config.project) if results else None
    )
    history = [r for r in runlog.history(config.paths.index_dir) if r.run_id != run_record.run_id]
    if run_record.status == "published" and run_record.release and run_record.model_version:
        render_linkage_report(
            Path(run_record.release),
            config.model.dir / run_record.model_version / "splink_model.json",
            out / "linkage.html",
            suppress_below=config.reports.suppress_below,
        )
    return render_quality_report(
        run_record,
        [*history, run_record],
        report_path(config, run_record.run_id),
        suppress_below=config.reports.suppress_below,
        data_docs=docs,
    )


# --- what a person reads at the end ---------------------------------------------------------------


def _command() -> str:
    """How to call `linkage` from here: the venv's script, relative to the working folder."""
    script = Path(sys.executable).with_name("linkage")
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return "linkage"


def format_summary(r: RunRecord) -> str:
    """The run in a few lines: books per agency, gates, linkage totals, where things are."""
    lines = [f"Run {r.run_id}: {r.status.upper()}", ""]
    lines.append(
        f"{'agency':<16}{'delivered':>10}{'accepted':>10}{'quarantined':>12}{'blank':>7}"
        f"{'dupes':>7}  rejected"
    )
    for e in r.extracts:
        lines.append(
            f"{e.agency:<16}{e.delivered:>10}{e.accepted:>10}{e.quarantined:>12}"
            f"{e.blank_lines:>7}{e.duplicates:>7}  {e.rejected or ''}"
        )
    failed = [g for g in r.gates if not g.passed]
    lines.append("")
    lines.append(
        "gates:          all passed"
        if not failed
        else "gates failed:   " + "; ".join(f"{g.gate} ({g.agency})" for g in failed)
    )
    if r.override:
        lines.append(f"override:       {r.override}")
    if r.status == "published":
        model = f"{r.model_version}{' (trained in this run)' if r.trained_this_run else ''}"
        lines += [
            f"records linked: {r.records}   persons: {r.persons}   links: {r.links}"
            + (f"   ({r.link_mode})" if r.link_mode else ""),
            "link grades:    "
            + ", ".join(f"{g} {n}" for g, n in r.link_grades.items())
            + (f"   vetoed: {sum(r.vetoes.values())}" if r.vetoes else ""),
            f"model:          {model}",
            f"index:          {r.release}",
        ]
    if r.changes:
        lines.append("changes:        " + ", ".join(f"{k} {v}" for k, v in r.changes.items()))
    if r.report:
        lines.append(f"report:         {r.report}")
        if r.status == "published":
            lines.append(f"linkage report: {Path(r.report).with_name('linkage.html')}")
    if r.status == "published":
        lines += [
            "",
            f'Try:  {_command()} sql "SELECT agency_count, count(*) AS persons FROM persons '
            'GROUP BY ALL ORDER BY 1"',
        ]
    return "\n".join(lines)
