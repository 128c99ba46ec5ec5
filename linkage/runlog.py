"""The run log: one JSON record per run (published, blocked or failed), counts only.

IG leads must be able to show for every nightly run what each agency delivered, where every row
went and why a run did or did not publish. Records live in ``<index_dir>/runs/<run_id>.json``,
outside the releases, so a blocked run is recorded even though it publishes nothing. The published
index's ``runs`` and ``extracts`` tables are filled from this log.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

RunStatus = Literal["published", "unchanged", "blocked", "failed"]
"""``unchanged``: every extract was byte-identical to the last published run's (a duplicate
delivery): nothing was linked or published and the current release stays."""


def quarantine_share(quarantined: int, delivered: int, blank_lines: int, duplicates: int) -> float:
    """Rows quarantined (by reading and validation) as a share of the distinct records delivered
    (not blank lines or exact duplicates): what the contract's ``quarantineThreshold`` limits."""
    records = delivered - blank_lines - duplicates
    return quarantined / records if records else 0.0


@dataclass(frozen=True)
class ExtractSummary:
    """One agency's books for one run. Counts only: never a person's values."""

    agency: str
    source: str
    sha256: str | None
    delivered: int
    accepted: int
    quarantined: int
    blank_lines: int
    duplicates: int
    standardised: int
    flags: dict[str, int] = field(default_factory=dict)
    """Quality flag -> records carrying it (from standardisation)."""
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    """Reason code (``rule:field``) -> quarantined rows; a row may count under several reasons."""
    rejected: str | None = None
    """Why the whole delivery was rejected (file-level reason code and detail), or None."""
    completeness: dict[str, float] = field(default_factory=dict)
    """Canonical field -> share of accepted records holding a value."""
    contract_problems: list[str] = field(default_factory=list)
    """Whole-extract contract rules that failed (row count, share of missing values)."""
    reused: int = 0
    """Of the standardised records, those delivered exactly as the previous release holds them,
    whose record was reused (an incremental intake, :mod:`linkage.incremental`)."""
    intake: str | None = None
    """Fingerprint of what decided validation and standardisation (contract, mapping, code)."""

    @property
    def quarantine_share(self) -> float:
        return quarantine_share(self.quarantined, self.delivered, self.blank_lines, self.duplicates)

    @property
    def balanced(self) -> bool:
        rest = self.accepted + self.quarantined + self.blank_lines + self.duplicates
        return self.delivered == rest


@dataclass(frozen=True)
class GateOutcome:
    """One publishing gate's verdict for one agency (or the whole run when agency is None)."""

    gate: str  # file_rejected | contract | quarantine_rate | volume | required_agency
    agency: str | None
    passed: bool
    detail: str


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    project: str
    started_at: str  # ISO 8601, UTC
    finished_at: str | None
    status: RunStatus
    config_path: str
    model_version: str | None
    trained_this_run: bool
    cluster_threshold: float
    extracts: tuple[ExtractSummary, ...]
    gates: tuple[GateOutcome, ...] = ()
    override: str | None = None
    """Who published despite failed gates, and why (recorded, never implicit)."""
    records: int | None = None
    persons: int | None = None
    links: int | None = None
    link_grades: dict[str, int] = field(default_factory=dict)
    """Scored pairs per grade (certain, probable, possible)."""
    vetoes: dict[str, int] = field(default_factory=dict)
    """Pairs at or above the cluster threshold not linked, per reason (see linkage.cluster)."""
    link_mode: str | None = None
    """``full`` or ``incremental`` (only new and changed records scored)."""
    changes: dict[str, int] = field(default_factory=dict)
    """Records new, changed, unchanged and deleted since the previous release (incremental)."""
    matching: str | None = None
    """Fingerprint of the model and rules that decided the links; a change forces a full run."""
    release: str | None = None
    report: str | None = None
    """The run's data-quality report (HTML), beside its Data Docs."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        d = json.loads(text)
        d["extracts"] = tuple(ExtractSummary(**e) for e in d["extracts"])
        d["gates"] = tuple(GateOutcome(**g) for g in d["gates"])
        return cls(**d)


def runs_dir(index_dir: Path) -> Path:
    return index_dir / "runs"


def save(index_dir: Path, record: RunRecord) -> Path:
    """Write (or replace) a run's record atomically."""
    folder = runs_dir(index_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record.run_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(record.to_json())
    os.replace(tmp, path)
    return path


def history(index_dir: Path) -> list[RunRecord]:
    """Every recorded run, oldest first."""
    folder = runs_dir(index_dir)
    if not folder.exists():
        return []
    return [RunRecord.from_json(p.read_text()) for p in sorted(folder.glob("*.json"))]
