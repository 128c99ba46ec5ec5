"""Parquet extracts: checked by column name, every contract column turned into text.

Only the contract's columns are read (extra columns are never loaded, only named in
``columns_dropped``). Values become text exactly as Arrow prints them: dates ``1980-01-02``,
integers ``123``, floats ``1.5`` (``12345.0`` -> ``12345``), booleans ``true``, timestamps
``2020-01-01 10:00:00.000000``; NULLs stay NULL. A Parquet file cannot be ragged, so nothing is
quarantined; ``_line`` is the row number (1-based) and ``blank_lines`` is always 0.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from linkage.config import Agency, ParquetSource
from linkage.contracts import Contract
from linkage.errors import FileRejected
from linkage.sources.common import (
    BATCH_ROWS,
    DuplicateFilter,
    ExtractResult,
    ExtractWriter,
    TransientSourceError,
    finish,
    plan_columns,
    resolve_delivery,
    sha256_file,
)


def _describe_non_parquet(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file"
    if head.startswith(b"PK"):
        return "a zip archive (an Excel .xlsx workbook is one)"
    if head.isascii():
        return "text (CSV?)"
    return "not a Parquet file"


def _castable(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    try:
        pc.cast(pa.array([], type=t), pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return False
    return True


def _as_text(arr: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return pc.cast(arr, pa.string())


def read_parquet_extract(
    agency: Agency, contract: Contract, out_dir: Path, *, batch_size: int = BATCH_ROWS
) -> ExtractResult:
    """Read an agency's Parquet delivery into accepted and quarantine Parquet files in ``out_dir``.

    Example:
        >>> read_parquet_extract(agency, contract, Path("out/work")).accepted  # doctest: +SKIP
        1000

    Raises:
        FileRejected: ``empty_file``, ``not_parquet``, ``missing_columns``, ``duplicate_columns``,
            ``unsupported_type`` (nested columns) or ``invalid_encoding`` (binary, not UTF-8).
        DeliveryMissing: no file to read.
        TransientSourceError: the file changed while it was read (still being written).
    """
    source = agency.source
    if not isinstance(source, ParquetSource):
        raise TypeError(f"agency {agency.name!r} does not have a Parquet source")
    path = resolve_delivery(source.path, source.pattern, agency=agency.name, kind="Parquet")
    label = str(path)
    before = path.stat()
    if before.st_size == 0:
        raise FileRejected(
            label,
            "empty_file",
            "the file is empty (0 bytes): a failed delivery; ask the sender to deliver it again",
        )
    with path.open("rb") as f:
        head = f.read(64)
    if not head.startswith(b"PAR1"):
        raise FileRejected(
            label,
            "not_parquet",
            f"the file is {_describe_non_parquet(head)}, not Parquet (recognised by its first "
            "bytes); ask the sender for the agreed format, or fix `source.kind`",
        )
    sha256 = sha256_file(path)
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise FileRejected(
            label, "not_parquet", f"the Parquet file cannot be opened ({e}); it may be truncated"
        ) from None

    schema = pf.schema_arrow
    plan = plan_columns(label, schema.names, contract)
    names = contract.column_names
    bad_types = [
        f"{n} ({schema.field(n).type})" for n in names if not _castable(schema.field(n).type)
    ]
    if bad_types:
        raise FileRejected(
            label,
            "unsupported_type",
            f"column(s) {bad_types} cannot be read as text (nested types); the contract's "
            "columns must be scalar",
        )

    delivered = pf.metadata.num_rows
    read = duplicates = 0
    is_duplicate = DuplicateFilter().is_duplicate
    with ExtractWriter(out_dir, agency.name, contract) as writer:
        try:
            for batch in pf.iter_batches(batch_size=batch_size, columns=names):
                arrays = [_as_text(batch.column(n)) for n in names]
                n = batch.num_rows
                arrays.append(pa.array(range(read + 1, read + n + 1), type=pa.int64()))
                read += n
                keep = [
                    not is_duplicate(values)
                    for values in zip(*(a.to_pylist() for a in arrays[:-1]), strict=True)
                ]
                out = pa.RecordBatch.from_arrays(arrays, schema=writer.schema)
                dropped = keep.count(False)
                if dropped:
                    duplicates += dropped
                    out = out.filter(pa.array(keep, type=pa.bool_()))
                writer.write_batch(out)
        except (pa.ArrowException, OSError) as e:
            if "utf8" in str(e).lower().replace("-", ""):
                raise FileRejected(
                    label,
                    "invalid_encoding",
                    f"a column could not be read as UTF-8 text near row {read + 1}; ask the "
                    "sender to store text columns as UTF-8 strings",
                ) from None
            raise FileRejected(
                label,
                "corrupt_file",
                f"the file could not be read near row {read + 1} ({type(e).__name__}); it may "
                "be truncated or damaged; ask the sender to deliver it again",
            ) from None
        if read != delivered:
            raise TransientSourceError(
                f"{label}: read {read} rows but the file's footer says {delivered}; retry once "
                "the delivery is complete"
            )
        now = path.stat()
        if (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise TransientSourceError(
                f"{label}: the file changed while it was read; it is probably still being "
                "written; retry once the delivery is complete"
            )
        return finish(
            writer,
            agency=agency.name,
            source=label,
            sha256=sha256,
            delivered=delivered,
            blank_lines=0,
            duplicates=duplicates,
            columns_dropped=plan.dropped,
        )
