"""Publishing gates: each blocks for its reason; an override publishes and is recorded."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from linkage.config import load_config
from linkage.gates import check_gates
from linkage.pipeline import PublishBlocked
from linkage.publish import current_release
from linkage.runlog import ExtractSummary, RunRecord, history
from tests.conftest import make_demo_project
from tests.test_pipeline import run_steps


def books(agency: str, accepted: int, quarantined: int = 0, rejected: str | None = None):
    return ExtractSummary(
        agency=agency, source="f", sha256=None, delivered=accepted + quarantined,
        accepted=accepted, quarantined=quarantined, blank_lines=0, duplicates=0,
        standardised=accepted, rejected=rejected,
    )  # fmt: skip


def past_run(i: int, accepted: dict[str, int], status: str = "published") -> RunRecord:
    return RunRecord(
        run_id=f"r{i}", project="demo", started_at="2026-01-01T00:00:00+00:00", finished_at=None,
        status=status, config_path="x", model_version="m", trained_this_run=False,
        cluster_threshold=0.99, extracts=tuple(books(a, n) for a, n in accepted.items()),
    )  # fmt: skip


AGENCIES = ("nhs_trust", "social_care", "police", "probation")


def outcome(outcomes, gate: str, agency: str):  # noqa: ANN001, ANN201
    return next(o for o in outcomes if o.gate == gate and o.agency == agency)


@pytest.fixture(scope="module")
def config():  # noqa: ANN201
    return load_config()


def test_all_gates_pass_on_an_ordinary_night(config) -> None:  # noqa: ANN001
    hist = [past_run(i, dict.fromkeys(AGENCIES, 1000)) for i in range(5)]
    out = check_gates(config, [books(a, 1010, 2) for a in AGENCIES], {}, hist)
    assert all(o.passed for o in out), out


@pytest.mark.parametrize(
    ("accepted", "passes"), [(450, False), (480, True), (1900, True), (1950, False)]
)
def test_volume_outside_half_to_double_the_trailing_median_blocks(config, accepted, passes) -> None:  # noqa: ANN001
    hist = [past_run(i, dict.fromkeys(AGENCIES, n)) for i, n in enumerate([900, 1000, 1100, 5])]
    # The median of the last runs (900, 1000, 1100, 5) is 950; a run that was itself blocked
    # does not count.
    hist.append(past_run(9, dict.fromkeys(AGENCIES, 10), status="blocked"))
    extracts = [books("police", accepted)] + [books(a, 1000) for a in AGENCIES if a != "police"]
    o = outcome(check_gates(config, extracts, {}, hist), "volume", "police")
    assert o.passed is passes
    assert "median" in o.detail


def test_volume_is_not_judged_without_history(config) -> None:  # noqa: ANN001
    out = check_gates(config, [books(a, 1) for a in AGENCIES], {}, [past_run(0, {"police": 10})])
    assert outcome(out, "volume", "police").passed


def test_quarantine_rate_above_the_contract_threshold_blocks(config) -> None:  # noqa: ANN001
    extracts = [books("police", 990, quarantined=10)] + [
        books(a, 1000) for a in AGENCIES if a != "police"
    ]
    out = check_gates(config, extracts, {"police": 0.005}, [])
    assert not outcome(out, "quarantine_rate", "police").passed
    assert (
        "1.00% of rows quarantined (limit 0.50%" in outcome(out, "quarantine_rate", "police").detail
    )
    out = check_gates(config, extracts, {"police": 0.02}, [])
    assert outcome(out, "quarantine_rate", "police").passed


def test_rejected_file_and_missing_required_agency_block(config) -> None:  # noqa: ANN001
    extracts = [
        books("police", 0, rejected="wrong_delimiter: header split on ';'"),
        books("probation", 0, rejected="missing_delivery: no file"),
        books("nhs_trust", 1000),
    ]
    out = check_gates(config, extracts, {}, [])
    assert not outcome(out, "file_rejected", "police").passed
    assert not outcome(out, "required_agency", "probation").passed
    assert not outcome(out, "required_agency", "social_care").passed  # no extract at all
    optional = config.model_copy(
        update={"agencies": [replace_required(a) for a in config.agencies]}
    )
    assert outcome(check_gates(optional, extracts, {}, []), "required_agency", "probation").passed


def replace_required(agency):  # noqa: ANN001, ANN201
    return agency.model_copy(update={"required": False})


def test_a_rejected_delivery_blocks_until_overridden_then_carries_forward(tmp_path: Path) -> None:
    path = make_demo_project(tmp_path, persons=400, seed=21)
    config = load_config(path)
    first = run_steps(config)
    police = tmp_path / "data" / "police.parquet"
    police_records = next(e for e in first.extracts if e.agency == "police").standardised
    police.write_bytes(b"")  # a zero-byte delivery: rejected

    with pytest.raises(PublishBlocked, match="file_rejected \\(police\\): empty_file"):
        run_steps(config)
    assert current_release(config.paths.index_dir).name == f"{first.run_id}.duckdb"
    blocked = history(config.paths.index_dir)[-1]
    assert blocked.status == "blocked" and blocked.release is None
    assert any(g.gate == "file_rejected" and not g.passed for g in blocked.gates)

    published = run_steps(config, override="A. Lead (IG), ticket 42: police resend due Monday")
    assert published.status == "published" and published.override.startswith("A. Lead")
    books_ = next(e for e in published.extracts if e.agency == "police")
    assert books_.rejected.endswith("(carried forward)") and books_.standardised == police_records
    with duckdb.connect(published.release, read_only=True) as con:
        assert con.sql("SELECT count(*) FROM records WHERE agency = 'police'").fetchall()[0][0] == (
            police_records
        )
        statuses = con.sql(
            "SELECT status, override IS NOT NULL FROM runs ORDER BY run_id"
        ).fetchall()
    assert statuses == [("published", False), ("blocked", False), ("published", True)]
    assert [r.status for r in history(config.paths.index_dir)] == [
        "published",
        "blocked",
        "published",
    ]


def test_a_whole_extract_contract_rule_that_fails_blocks(config) -> None:  # noqa: ANN001
    """A header-only delivery breaks the contract's rowCount > 0 rule (bad-inputs A12)."""
    header_only = replace(books("police", 0), contract_problems=["row_count:_table does not hold"])
    extracts = [header_only] + [books(a, 1000) for a in AGENCIES if a != "police"]
    o = outcome(check_gates(config, extracts, {}, []), "contract", "police")
    assert not o.passed and "row_count" in o.detail
