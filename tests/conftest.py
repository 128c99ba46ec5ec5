"""Shared set-up: Prefect gets a private, throw-away home and the offline settings before import."""

from __future__ import annotations

import os
import tempfile

_PREFECT_HOME = tempfile.mkdtemp(prefix="linkage-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.pop("PREFECT_API_URL", None)

from flows.env import apply_offline_defaults  # noqa: E402

apply_offline_defaults()
