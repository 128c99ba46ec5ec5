"""Pieces shared by the source connectors: the result, column checks, de-duplication, output.

Every connector reads one delivery and writes two Parquet files: the accepted rows (contract
columns as text, plus ``_line``) and the quarantine (rows kept outside the linkage, with a reason).
The books must balance: ``delivered == accepted + quarantined + blank_lines + duplicates``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from linkage.contracts import Contract
from linkage.errors import FileRejected, SourceError

logger = logging.getLogger(__name__)

LINE = "_line"
"""Name of the column holding the physical line (CSV) or row number (Parquet, database)."""

BATCH_ROWS = 100_000
"""Rows per Parquet batch: large enough to be fast, small enough to keep memory flat."""

ACCEPTED_MODE = 0o640  # identifiable data: owner and the linkage group only
QUARANTINE_MODE = 0o600  # restricted store: raw lines of rejected records, owner only

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field(LINE, pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("raw", pa.string()),
    ]
)


class TransientSourceError(SourceError):
    """The source could not be reached for now (connection refused or dropped, timeout).

    Retrying later may succeed; orchestration retries on this class and on nothing else.
    Re-exported as ``linkage.sources.TransientSourceError``.
    """

    exit_code = 75  # EX_TEMPFAIL


class DeliveryMissing(SourceError):
    """No file was delivered: the configured file does not exist, or a drop folder is empty.

    Kept apart from `FileRejected` so that a run can apply its missing-delivery policy (block, or
    carry the last extract forward with a `stale_since` flag) rather than treat it as a bad file.
    """


@dataclass(frozen=True)
class ExtractResult:
    """What one extract delivered and where its rows went. Paths and counts, never rows.

    The counts always balance; constructing an unbalanced result raises `ValueError`.
    """

    agency: str
    source: str
    sha256: str | None
    accepted_path: Path
    quarantine_path: Path
    delivered: int
    accepted: int
    quarantined: int
    blank_lines: int
    duplicates: int
    columns_dropped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # An explicit check rather than `assert`, so that it also holds under `python -O`.
        total = self.accepted + self.quarantined + self.blank_lines + self.duplicates
        if self.delivered != total:
            raise ValueError(
                f"{self.source}: the extract does not reconcile: delivered {self.delivered} != "
                f"accepted {self.accepted} + quarantined {self.quarantined} + blank lines "
                f"{self.blank_lines} + duplicates {self.duplicates} (= {total}); this is a bug"
            )


# --- finding the delivered file -------------------------------------------------------------------


def resolve_delivery(path: Path, pattern: str, *, agency: str, kind: str) -> Path:
    """The file to read: ``path`` itself, or the last file in name order matching ``pattern``.

    Raises:
        DeliveryMissing: the file does not exist, or the folder holds no matching file.
    """
    if path.is_dir():
        files = sorted((p for p in path.glob(pattern) if p.is_file()), key=lambda p: p.name)
        if not files:
            raise DeliveryMissing(
                f"agency {agency!r}: no {kind} file matching {pattern!r} in the drop folder "
                f"{path}; check that the delivery arrived, or fix `source.pattern`"
            )
        return files[-1]
    if not path.is_file():
        raise DeliveryMissing(
            f"agency {agency!r}: the {kind} file {path} does not exist; check that the delivery "
            "arrived, or fix `source.path`"
        )
    return path


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# --- columns --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnPlan:
    """How the delivered columns map onto the contract's columns.

    ``index[i]`` is the position in the delivery of the contract's i-th column. ``identity`` is
    true when the delivery has exactly the contract's columns in the contract's order.
    """

    index: tuple[int, ...]
    dropped: list[str]
    identity: bool


def plan_columns(source: str, found: Sequence[str], contract: Contract) -> ColumnPlan:
    """Check delivered column names against the contract, by name.

    Missing columns reject the delivery (a renamed column shows as one missing and one
    unexpected, both named); extra columns are dropped, never stored; a different order is fine.

    Raises:
        FileRejected: ``duplicate_columns`` or ``missing_columns``.
        SourceError: the contract uses the reserved column name ``_line``.
    """
    expected = contract.column_names
    if LINE in expected:
        raise SourceError(
            f"{contract.path}: the contract declares a column named {LINE!r}, which is reserved "
            "for the line number of each record; rename it in the contract"
        )
    seen: set[str] = set()
    repeated: set[str] = set()
    for name in found:
        (repeated if name in seen else seen).add(name)
    if repeated:
        raise FileRejected(
            source,
            "duplicate_columns",
            f"column name(s) {sorted(repeated)} appear more than once in the header, so columns "
            "cannot be matched by name; ask the sender to fix the extract",
        )
    wanted = set(expected)
    missing = [c for c in expected if c not in seen]
    extra = [c for c in found if c not in wanted]
    if missing:
        detail = f"missing column(s) {missing}"
        if extra:
            detail += (
                f"; unexpected column(s) {extra} (a renamed column shows as one missing and one "
                "unexpected)"
            )
        near = [
            f"{e!r} differs from {m!r} only in case or spaces"
            for m in missing
            for e in extra
            if e.strip().casefold() == m.casefold()
        ]
        if near:
            detail += "; " + "; ".join(near)
        detail += (
            f". The delivery must have every column of contract {contract.id} v{contract.version} "
            f"({contract.path.name}); ask the sender to fix the extract, or change the contract"
        )
        raise FileRejected(source, "missing_columns", detail)
    position = {c: i for i, c in enumerate(found)}
    index = tuple(position[c] for c in expected)
    return ColumnPlan(index=index, dropped=extra, identity=list(found) == expected)


# --- exact duplicates -----------------------------------------------------------------------------


class DuplicateFilter:
    """Remembers every row seen, to drop exact repeats: a 128-bit digest each, which costs about
    100 bytes of memory a row (the one part of an extract's memory that grows with its size).

    Rows are sequences of ``str | None``; ``None`` (a NULL) differs from ``""``. A digest collision
    would take about 2**64 rows, so a distinct row is never dropped in practice.
    """

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def seen_text(self, text: str) -> bool:
        """Whether the row ``"\\x00".join(values)`` was seen before (and remember it).

        Only for rows of strings none of which contains a NUL character, so the text is
        unambiguous; `is_duplicate` handles any row.
        """
        key = hashlib.blake2b(
            text.encode("utf-8", "surrogatepass"), digest_size=16, person=b"plain"
        ).digest()
        if key in self._seen:
            return True
        self._seen.add(key)
        return False

    def is_duplicate(self, values: Sequence[str | None]) -> bool:
        """Whether this row was seen before (and remember it)."""
        if None not in values:
            text = "\x00".join(values)  # type: ignore[arg-type]
            if text.count("\x00") == len(values) - 1:
                return self.seen_text(text)
        # NULLs or NUL characters: an unambiguous but slower encoding, in its own key space.
        key = hashlib.blake2b(
            repr(tuple(values)).encode("utf-8", "surrogatepass"), digest_size=16, person=b"repr"
        ).digest()
        if key in self._seen:
            return True
        self._seen.add(key)
        return False


# --- output ---------------------------------------------------------------------------------------


def accepted_schema(contract: Contract) -> pa.Schema:
    return pa.schema(
        [pa.field(c, pa.string()) for c in contract.column_names]
        + [pa.field(LINE, pa.int64(), nullable=False)]
    )


class ExtractWriter:
    """Writes the accepted and quarantine Parquet files, atomically and with restricted modes.

    Both files are written under temporary names in ``out_dir`` and renamed into place only by
    `commit`; if the extract fails (an exception inside the ``with`` block) the temporary files
    are removed and any earlier output is left as it was.
    """

    def __init__(self, out_dir: Path, agency: str, contract: Contract) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.accepted_path = out_dir / f"{agency}.parquet"
        self.quarantine_path = out_dir / f"{agency}.quarantine.parquet"
        self.schema = accepted_schema(contract)
        self._tmp: list[Path] = []
        acc_tmp = self._mktemp(out_dir, agency, ACCEPTED_MODE)
        qua_tmp = self._mktemp(out_dir, agency, QUARANTINE_MODE)
        # The files exist already with their modes; pyarrow truncates them and keeps the modes.
        self._acc = pq.ParquetWriter(str(acc_tmp), self.schema)
        self._qua = pq.ParquetWriter(str(qua_tmp), QUARANTINE_SCHEMA)
        self._q_rows: list[tuple[int, str, str, str | None]] = []
        self.accepted = 0
        self.quarantined = 0

    def _mktemp(self, out_dir: Path, agency: str, mode: int) -> Path:
        fd, name = tempfile.mkstemp(dir=out_dir, prefix=f".{agency}.", suffix=".parquet.tmp")
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        self._tmp.append(Path(name))
        return Path(name)

    def write_rows(self, rows: Sequence[Sequence[str | None]], lines: Sequence[int]) -> None:
        """Write accepted rows (values in contract order) with their line numbers."""
        if not rows:
            return
        columns = list(zip(*rows, strict=True))
        arrays = [pa.array(col, type=pa.string()) for col in columns]
        arrays.append(pa.array(lines, type=pa.int64()))
        self.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))

    def write_joined(self, texts: list[str], lines: Sequence[int]) -> None:
        """Write accepted rows given as ``"\\x00".join(values)`` (no value containing a NUL).

        Faster than `write_rows` for long text batches: the strings are split by Arrow, and the
        Python row lists can be freed as soon as each row is read.
        """
        if not texts:
            return
        joined = pa.array(texts, type=pa.string())
        width = len(self.schema) - 1
        if width == 1:
            arrays = [joined]
        else:
            parts = pc.split_pattern(joined, "\x00")
            arrays = [pc.list_element(parts, i) for i in range(width)]
        arrays.append(pa.array(lines, type=pa.int64()))
        self.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))

    def write_batch(self, batch: pa.RecordBatch) -> None:
        """Write an accepted batch already in the accepted schema."""
        if batch.num_rows:
            self._acc.write_batch(batch)
            self.accepted += batch.num_rows

    def quarantine(self, line: int, reason: str, detail: str, raw: str | None) -> None:
        self._q_rows.append((line, reason, detail, raw))
        self.quarantined += 1
        if len(self._q_rows) >= 10_000:
            self._flush_quarantine()

    def _flush_quarantine(self) -> None:
        if self._q_rows:
            cols = list(zip(*self._q_rows, strict=True))
            arrays = [
                pa.array(c, type=f.type) for c, f in zip(cols, QUARANTINE_SCHEMA, strict=True)
            ]
            self._qua.write_batch(pa.RecordBatch.from_arrays(arrays, schema=QUARANTINE_SCHEMA))
            self._q_rows.clear()

    def commit(self) -> None:
        """Close both files and move them into place (the quarantine first)."""
        self._flush_quarantine()
        self._acc.close()
        self._qua.close()
        acc_tmp, qua_tmp = self._tmp
        os.replace(qua_tmp, self.quarantine_path)
        os.replace(acc_tmp, self.accepted_path)
        self._tmp.clear()

    def abort(self) -> None:
        for w in (self._acc, self._qua):
            with contextlib.suppress(Exception):  # best effort: we are already failing
                w.close()
        for p in self._tmp:
            p.unlink(missing_ok=True)
        self._tmp.clear()

    def __enter__(self) -> ExtractWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tmp:  # not committed: failed, or the caller forgot to commit
            self.abort()


def finish(
    writer: ExtractWriter,
    *,
    agency: str,
    source: str,
    sha256: str | None,
    delivered: int,
    blank_lines: int,
    duplicates: int,
    columns_dropped: list[str],
) -> ExtractResult:
    """Balance the books, move the files into place and log one line of counts."""
    result = ExtractResult(  # raises if the counts do not balance, before anything is published
        agency=agency,
        source=source,
        sha256=sha256,
        accepted_path=writer.accepted_path,
        quarantine_path=writer.quarantine_path,
        delivered=delivered,
        accepted=writer.accepted,
        quarantined=writer.quarantined,
        blank_lines=blank_lines,
        duplicates=duplicates,
        columns_dropped=list(columns_dropped),
    )
    writer.commit()
    logger.info(
        "extract %s from %s: delivered=%d accepted=%d quarantined=%d blank_lines=%d "
        "duplicates=%d columns_dropped=%s",
        agency,
        source,
        result.delivered,
        result.accepted,
        result.quarantined,
        result.blank_lines,
        result.duplicates,
        result.columns_dropped,
    )
    return result
