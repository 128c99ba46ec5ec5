"""Training stays bounded: an EM session whose block compares too many pairs uses a sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from linkage.config import load_config
from linkage.model import load_model
from tests.conftest import make_demo_project
from tests.test_pipeline import run_steps

NAME_SESSION = '(l."given_name" = r."given_name") AND (l."family_name" = r."family_name")'


@pytest.mark.parametrize("cap", [None, 40])
def test_an_em_session_over_the_pair_cap_is_trained_on_a_sample(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, cap: int | None
) -> None:
    path = make_demo_project(tmp_path, persons=800, seed=8)
    if cap is not None:
        path.write_text(path.read_text().replace("model:\n", f"model:\n  max_pairs_em: {cap}\n"))
    config = load_config(path)
    with caplog.at_level("INFO", "linkage.model"):
        run_steps(config)  # the first run trains
    model = load_model(config)
    metadata = json.loads((model.settings_path.parent / "metadata.json").read_text())
    sampled = metadata["training_data"]["em_sessions_sampled"]
    if cap is None:  # the demo's sessions are far below the default cap: nothing sampled
        assert sampled == {} and "trained on one in" not in caplog.text
        return
    # The name session of 800 persons compares a few hundred pairs: one in k of them, k > 1.
    assert sampled[NAME_SESSION] > 1
    assert f"EM session {NAME_SESSION}" in caplog.text
    settings = json.loads(model.settings_path.read_text())
    m = [
        level["m_probability"]
        for comparison in settings["comparisons"]
        for level in comparison["comparison_levels"]
        if "m_probability" in level
    ]
    assert m and all(0 < p <= 1 for p in m)
