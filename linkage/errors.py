"""One error hierarchy for the library.

Every message says what is wrong, the offending value (never a person's data), and how to fix it.
The CLI turns these into messages and exit codes in one place (``linkage.cli``).
"""

from __future__ import annotations


class LinkageError(Exception):
    """Base class of every error the library raises on purpose."""

    exit_code = 1


class ConfigError(LinkageError):
    """The project configuration is invalid. Carries every problem found, not just the first."""

    exit_code = 78  # EX_CONFIG

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in the configuration:\n{lines}")


class KeyFileError(LinkageError):
    """The pseudonymisation key is missing, malformed or readable by others."""

    exit_code = 78  # EX_CONFIG


class ContractError(LinkageError):
    """A data contract file is missing, unreadable or invalid."""

    exit_code = 78

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in the data contract:\n{lines}")


class SourceError(LinkageError):
    """An extract could not be read at all (the whole delivery is rejected, nothing is used)."""

    exit_code = 65  # EX_DATAERR


class FileRejected(SourceError):
    """A delivered file breaks its contract at file level (header, delimiter, encoding, empty).

    ``reason`` is a short machine-readable code recorded in the run record.
    """

    def __init__(self, path: str, reason: str, detail: str) -> None:
        self.path = path
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: file rejected ({reason}): {detail}")


class ModelError(LinkageError):
    """No usable model artefact, or one that does not fit the configuration."""


class BlockingBudgetError(LinkageError):
    """A blocking rule would generate more pairs than the configured budget."""

    exit_code = 65  # EX_DATAERR


class PublishError(LinkageError):
    """Publishing was refused (for example the books of a run do not balance)."""


class RunLockedError(LinkageError):
    """Another run holds the project lock."""

    exit_code = 75  # EX_TEMPFAIL


class QueryError(LinkageError):
    """An analyst query failed (bad SQL, or no published index yet)."""


class SearchError(LinkageError):
    """A search or lookup was refused: the query is not specific enough (HTTP 400).

    ``reason`` is a short code for the audit log; the message names the fields (never values).
    """

    exit_code = 64  # EX_USAGE

    def __init__(self, message: str, *, reason: str = "not_specific_enough") -> None:
        self.reason = reason
        super().__init__(message)


class InvalidQueryError(SearchError):
    """A search or lookup value is malformed: a date that is not a date, an unknown scheme
    (HTTP 422)."""

    exit_code = 65  # EX_DATAERR

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid query: " + "; ".join(problems), reason="invalid_input")
