"""Source connectors: read one agency extract without losing a row.

One entry point, `read_extract`, picks the connector by ``agency.source.kind`` (csv, parquet,
database). Each writes ``out_dir/<agency>.parquet`` (the contract's columns as text, in contract
order, plus ``_line``) and ``out_dir/<agency>.quarantine.parquet`` (``_line``, ``reason``,
``detail``, ``raw``; mode 0600, as raw lines are personal data), and returns an `ExtractResult`
of paths and counts whose books balance::

    delivered == accepted + quarantined + blank_lines + duplicates

Faults, by what the caller should do:

- `FileRejected` (a `SourceError`): the delivery breaks its contract; use none of it.
- `DeliveryMissing` (a `SourceError`): nothing was delivered; apply the missing-delivery policy.
- `TransientSourceError` (a `SourceError`): try again later (orchestration retries this one).
- `SourceError`: anything else that stops the read; retrying will not help.

Example:
    >>> from linkage.sources import read_extract
    >>> result = read_extract(agency, contract, Path("out/work"))  # doctest: +SKIP
    >>> result.accepted, result.quarantined  # doctest: +SKIP
    (9990, 10)
"""

from __future__ import annotations

from pathlib import Path

from linkage.config import Agency, DuckDBConfig
from linkage.contracts import Contract
from linkage.sources.common import (
    LINE,
    QUARANTINE_SCHEMA,
    DeliveryMissing,
    ExtractResult,
    TransientSourceError,
)
from linkage.sources.csv import read_csv_extract
from linkage.sources.database import read_database_extract
from linkage.sources.parquet import read_parquet_extract

__all__ = [
    "LINE",
    "QUARANTINE_SCHEMA",
    "DeliveryMissing",
    "ExtractResult",
    "TransientSourceError",
    "read_csv_extract",
    "read_database_extract",
    "read_extract",
    "read_parquet_extract",
]

# TransientSourceError and DeliveryMissing are defined in common.py, where the connectors import
# them without a cycle; this package's namespace is their public home.


def read_extract(
    agency: Agency,
    contract: Contract,
    out_dir: Path,
    duckdb_config: DuckDBConfig | None = None,
) -> ExtractResult:
    """Read one agency's extract with the connector for its source kind.

    Args:
        agency: the agency's configuration (its ``source`` says where and how to read).
        contract: the agency's data contract (its columns, in order).
        out_dir: where to write ``<agency>.parquet`` and ``<agency>.quarantine.parquet``.
        duckdb_config: the memory limit, spill folder and threads for the CSV reader's DuckDB (its
            defaults when None).

    Returns:
        Paths and counts; ``delivered == accepted + quarantined + blank_lines + duplicates``.

    Raises:
        FileRejected, DeliveryMissing, TransientSourceError, SourceError: see the module doc.
    """
    kind = agency.source.kind
    if kind == "csv":
        return read_csv_extract(agency, contract, out_dir, duckdb_config=duckdb_config)
    if kind == "parquet":
        return read_parquet_extract(agency, contract, out_dir)
    if kind == "database":
        return read_database_extract(agency, contract, out_dir)
    raise ValueError(f"agency {agency.name!r}: unknown source kind {kind!r}")
