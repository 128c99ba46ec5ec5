"""The search audit trail: who searched for whom, when, and what they got back.

Kept apart from ordinary logs, which never hold a query's values: one JSON line per search or
lookup, appended to ``<paths.index_dir>/audit/search-YYYY-MM-DD.jsonl`` (UTC date; folder 0700,
files 0600, because the lines name the people searched for)::

    {"time": "2026-11-26T21:04:05.123456+00:00", "user": "jsmith", "action": "search",
     "query": {"family_name": "O'Brien", "date_of_birth": "1984-03-01"}, "results": 1,
     "outcome": "ok", "reason": null, "release": "20261126T020000000000Z-1234"}

``outcome`` is ``ok``, ``refused`` (``reason``: ``not_specific_enough``, ``invalid_input``,
``no_user``) or ``error`` (``reason``: the exception's class). A line is written before the
answer is returned; if it cannot be written the search fails (no audit, no answer).
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

Outcome = Literal["ok", "refused", "error"]

#: Longer values (only in refused queries: valid ones are shorter) are cut, marked with "...".
MAX_VALUE = 200


def _clip(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE else value[:MAX_VALUE] + "..."
    if isinstance(value, dict):
        return {_clip(str(k)): _clip(v) for k, v in list(value.items())[:20]}
    if isinstance(value, list | tuple):
        return [_clip(v) for v in value[:20]]
    return value


class AuditLog:
    """Appends audit lines; safe across threads, and across processes (one ``O_APPEND`` write
    per line)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._open: tuple[Path, int] | None = None

    def path_for(self, when: datetime) -> Path:
        return self.directory / f"search-{when:%Y-%m-%d}.jsonl"

    def record(
        self,
        *,
        user: str,
        action: Literal["search", "lookup"],
        query: dict[str, Any],
        results: int,
        outcome: Outcome,
        reason: str | None = None,
        release: str | None = None,
    ) -> None:
        """Append one line: the query as asked (not standardised; values over
        :data:`MAX_VALUE` characters cut)."""
        now = datetime.now(UTC)
        line = {
            "time": now.isoformat(),
            "user": user,
            "action": action,
            "query": _clip(query),
            "results": results,
            "outcome": outcome,
            "reason": reason,
            "release": release,
        }
        data = (json.dumps(line, default=str, ensure_ascii=True) + "\n").encode("ascii")
        with self._lock:
            os.write(self._fd_for(self.path_for(now)), data)

    def _fd_for(self, path: Path) -> int:
        """An open descriptor on ``path`` (reopened on a new day, or if the file was moved)."""
        if self._open is not None:
            open_path, fd = self._open
            try:
                same = open_path == path and os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)
            self._open = None
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        self._open = (path, fd)
        return fd

    def close(self) -> None:
        with self._lock:
            if self._open is not None:
                os.close(self._open[1])
                self._open = None
