"""Publishing gates: checks that block a release and keep the previous one current.

Each gate returns outcomes with a plain reason for the run record. A person can publish despite
failed gates only with an explicit override, which is recorded with the run; the books gate (every
delivered row accounted for) can never be overridden.
"""

from __future__ import annotations

from statistics import median

from linkage.config import ProjectConfig
from linkage.runlog import ExtractSummary, GateOutcome, RunRecord

# bad-inputs A1: above this share of quarantined rows the delivery is suspect (contract may differ).
DEFAULT_QUARANTINE_THRESHOLD = 0.005


def check_gates(
    config: ProjectConfig,
    extracts: list[ExtractSummary],
    thresholds: dict[str, float | None],
    history: list[RunRecord],
) -> list[GateOutcome]:
    """Every gate for every agency; ``thresholds`` is each contract's quarantine threshold."""
    outcomes: list[GateOutcome] = []
    by_agency = {e.agency: e for e in extracts}
    published = [r for r in history if r.status == "published"]
    for agency in config.agencies:
        e = by_agency.get(agency.name)
        if e is None or (e.rejected or "").startswith("missing_delivery"):
            reason = e.rejected if e else "no extract"
            outcomes.append(
                GateOutcome(
                    "required_agency",
                    agency.name,
                    not agency.required,
                    f"no delivery ({reason}); "
                    + ("the agency is required" if agency.required else "optional agency, skipped"),
                )
            )
            continue
        if e.rejected:
            outcomes.append(GateOutcome("file_rejected", agency.name, False, e.rejected))
            continue
        outcomes.append(GateOutcome("file_rejected", agency.name, True, "delivery accepted"))
        outcomes.append(
            GateOutcome(
                "contract",
                agency.name,
                not e.contract_problems,
                "; ".join(e.contract_problems) or "whole-extract rules hold",
            )
        )
        outcomes.append(_quarantine_rate(e, thresholds.get(agency.name)))
        outcomes.append(_volume(config, e, published))
    return outcomes


def _quarantine_rate(e: ExtractSummary, threshold: float | None) -> GateOutcome:
    limit = DEFAULT_QUARANTINE_THRESHOLD if threshold is None else threshold
    rate = e.quarantine_share
    return GateOutcome(
        "quarantine_rate",
        e.agency,
        rate <= limit,
        f"{rate:.2%} of rows quarantined (limit {limit:.2%} from the contract)",
    )


def _volume(config: ProjectConfig, e: ExtractSummary, published: list[RunRecord]) -> GateOutcome:
    g = config.gates
    previous = [
        x.accepted
        for r in published[-g.volume_window :]
        for x in r.extracts
        if x.agency == e.agency and not x.rejected
    ]
    if len(previous) < g.volume_min_history:
        return GateOutcome(
            "volume", e.agency, True, f"{len(previous)} earlier runs: too few to judge volume"
        )
    mid = median(previous)
    ratio = e.accepted / mid if mid else float("inf")
    ok = g.volume_min_ratio <= ratio <= g.volume_max_ratio
    return GateOutcome(
        "volume",
        e.agency,
        ok,
        f"{e.accepted} accepted rows = {ratio:.0%} of the median of the last {len(previous)} runs "
        f"(allowed {g.volume_min_ratio:.0%} to {g.volume_max_ratio:.0%})",
    )


def blocking(outcomes: list[GateOutcome]) -> list[GateOutcome]:
    return [o for o in outcomes if not o.passed]
