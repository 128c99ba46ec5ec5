"""Prefect settings for an air-gapped server, applied before Prefect is imported.

Each is a default: a data team's own environment (for example a PREFECT_API_URL pointing at their
Prefect server) wins.
"""

from __future__ import annotations

import os

OFFLINE_DEFAULTS = {
    # No telemetry, no calls home.
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The ephemeral server can take a while to start on a busy 2-core machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    # Our loggers reach the Prefect UI; they only ever log counts and paths.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "linkage",
    # Library code also runs outside flows (tests, the CLI's library commands).
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    # Task results are small (paths and counts) but are still not written to disk.
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
}


def apply_offline_defaults() -> None:
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
