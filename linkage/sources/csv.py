"""CSV extracts: every line is read, and every line is accounted for.

Nothing is guessed: the delimiter, quote and encoding come from the source config, the columns from
the contract, and nothing is type-cast (identifiers keep their leading zeros). The file is parsed
by Python's ``csv`` module in strict mode over a stream decoded as declared (``utf-8`` is read as
``utf-8-sig`` so that a byte-order mark is dropped), hashed as it is read, and written to Parquet
in batches, so memory stays flat however large the file. A clean UTF-8 file, one that holds
nothing the two could read differently and nothing to quarantine, is read by DuckDB instead, to
the same rows (see "the fast path" below).

File-level faults reject the whole file (`FileRejected`, nothing is used): not CSV at all (magic
bytes), empty, wrong delimiter, missing or renamed columns, bytes that are not in the declared
encoding. Record-level faults quarantine the record with its raw text and go on:

==================  ====================================================================
reason              cause
==================  ====================================================================
too_many_columns    more fields than the header
missing_columns     fewer fields than the header (also each half of an unquoted newline)
repeated_header     a row equal to the header (files concatenated upstream)
malformed_quote     text after a closing quote (``"O"Brien``); each line of the record
unterminated_quote  a quote never closed before the end of the file; each line from it
field_too_large     a field over 131,072 characters (a runaway quote); each line of it
==================  ====================================================================

When the parser stops inside a record (the last three reasons), each physical line of that record
is quarantined on its own, so a runaway quote shows as many quarantined lines, not one.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import operator
import os
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from linkage.config import Agency, CsvSource, DuckDBConfig
from linkage.contracts import Contract
from linkage.db import memory_limit_bytes, quote, sql_str
from linkage.errors import FileRejected
from linkage.sources.common import (
    BATCH_ROWS,
    LINE,
    ColumnPlan,
    DuplicateFilter,
    ExtractResult,
    ExtractWriter,
    TransientSourceError,
    finish,
    plan_columns,
    resolve_delivery,
)

log = logging.getLogger(__name__)

_CANDIDATE_DELIMITERS = (",", ";", "\t", "|")

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"PAR1", "a Parquet file"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 (.xls) or other OLE2 document"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"(\xb5/\xfd", "a zstd-compressed file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"%PDF-", "a PDF document"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_BZIP2 = re.compile(rb"BZh[1-9]1AY&SY")
_C1 = re.compile(rb"[\x80-\x9f]")


# --- before parsing: what kind of file is it? ----------------------------------------------------


def _binary_kind(path: Path, head: bytes) -> str | None:
    """A description of the file if its first bytes show it is not text, else None."""
    if _BZIP2.match(head):
        return "a bzip2-compressed file"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            if magic == b"PK\x03\x04":
                try:
                    with zipfile.ZipFile(path) as z:
                        names = set(z.namelist())
                except (zipfile.BadZipFile, OSError):
                    names = set()
                if "xl/workbook.xml" in names:
                    return "an Excel workbook (.xlsx, a zip archive)"
                if "content.xml" in names:
                    return "an OpenDocument file (.ods or similar, a zip archive)"
            return what
    return None


def _check_head(path: Path, label: str, encoding: str, agency: str) -> None:
    with path.open("rb") as f:
        head = f.read(64)
    kind = _binary_kind(path, head)
    if kind:
        raise FileRejected(
            label,
            "not_csv",
            f"the file is {kind}, not CSV text (recognised by its first bytes); ask the sender "
            "for a plain-text CSV export",
        )
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileRejected(
            label,
            "invalid_encoding",
            "the file starts with a UTF-16 byte-order mark; ask the sender for a UTF-8 export",
        )
    if encoding != "utf-8" and head.startswith(codecs.BOM_UTF8):
        raise FileRejected(
            label,
            "invalid_encoding",
            f"the file starts with a UTF-8 byte-order mark but the source declares "
            f"`encoding: {encoding}`; declare `encoding: utf-8` in the source config of agency "
            f"{agency!r}",
        )


# --- while parsing: hash the bytes, watch for signs of a wrongly declared encoding ----------------


class _HashingReader(io.RawIOBase):
    """Passes bytes through, hashing them, and for cp1252/latin-1 sources notes whether the file
    is in fact valid UTF-8 (which that reading would garble) or, for latin-1, holds C1 control
    bytes (0x80-0x9F: most likely cp1252 punctuation such as 0x92)."""

    def __init__(self, raw: io.RawIOBase | io.BufferedReader, encoding: str) -> None:
        super().__init__()
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._watch_utf8 = encoding != "utf-8"
        self._watch_c1 = encoding == "latin-1"
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.utf8_valid = True
        self.non_ascii = False
        self.c1 = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview | bytearray) -> int:  # type: ignore[override]
        n = self._raw.readinto(b)
        if n:
            view = memoryview(b)[:n]
            self.sha256.update(view)
            self.size += n
            if self._watch_utf8:
                chunk = view.tobytes()
                if not chunk.isascii():
                    self.non_ascii = True
                    if self._watch_c1 and not self.c1 and _C1.search(chunk):
                        self.c1 = True
                if self.utf8_valid:
                    try:
                        self._utf8.decode(chunk)
                    except UnicodeDecodeError:
                        self.utf8_valid = False
        return n or 0

    def looks_utf8(self) -> bool:
        """True when the whole file was valid UTF-8 and not plain ASCII."""
        if not (self._watch_utf8 and self.utf8_valid and self.non_ascii):
            return False
        try:
            self._utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
        return True


def _first_line(path: Path, test: Callable[[bytes], int | None]) -> tuple[int, int] | None:
    """(line number, offending byte) of the first line where ``test`` finds a byte, if any."""
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            found = test(line)
            if found is not None:
                return number, found
    return None


def _undecodable(codec: str) -> Callable[[bytes], int | None]:
    def test(line: bytes) -> int | None:
        try:
            line.decode(codec)
        except UnicodeDecodeError as e:
            return line[e.start]
        return None

    return test


def _first_c1(line: bytes) -> int | None:
    m = _C1.search(line)
    return m.group()[0] if m else None


def _first_non_ascii(line: bytes) -> int | None:
    return next((b for b in line if b > 0x7F), None)


def _where(found: tuple[int, int] | None) -> str:
    return f"line {found[0]}: byte 0x{found[1]:02X}" if found else "a byte"


def _decode_rejection(path: Path, label: str, encoding: str, agency: str) -> FileRejected:
    where = _where(_first_line(path, _undecodable("utf-8" if encoding == "utf-8" else encoding)))
    if encoding == "utf-8":
        hint = (
            "The file is probably Windows cp1252 or latin-1 text; if so, declare "
            f"`encoding: cp1252` in the source config of agency {agency!r}"
        )
    else:
        hint = f"Check the file's real encoding and declare it for agency {agency!r}"
    return FileRejected(
        label,
        "invalid_encoding",
        f"{where} is not valid {encoding} (the declared encoding). {hint}. Bytes are never "
        "replaced, as that would corrupt names.",
    )


def _stream_rejection(
    hashing: _HashingReader, path: Path, label: str, encoding: str, agency: str
) -> FileRejected | None:
    if hashing.looks_utf8():
        return FileRejected(
            label,
            "invalid_encoding",
            f"{_where(_first_line(path, _first_non_ascii))} starts a UTF-8 character, and the "
            f"whole file is valid UTF-8, but the source declares `encoding: {encoding}`; reading "
            "it that way would garble names (Zoë would become ZoÃ«). Declare `encoding: utf-8` "
            f"in the source config of agency {agency!r}",
        )
    if hashing.c1:
        return FileRejected(
            label,
            "invalid_encoding",
            f"{_where(_first_line(path, _first_c1))} is a control character in latin-1, which "
            "means the file is almost certainly Windows cp1252 text (0x92 is a right quote "
            f"there); declare `encoding: cp1252` in the source config of agency {agency!r}",
        )
    return None


# --- parsing --------------------------------------------------------------------------------------


@dataclass
class _Counts:
    delivered: int = 0
    blank_lines: int = 0
    duplicates: int = 0
    columns_dropped: tuple[str, ...] = ()


def _strip_eol(raw: str) -> str:
    if raw.endswith("\r\n"):
        return raw[:-2]
    if raw.endswith(("\n", "\r")):
        return raw[:-1]
    return raw


def _parser_reason(err: csv.Error) -> str:
    msg = str(err)
    if "unexpected end of data" in msg:
        return "unterminated_quote"
    if "expected after" in msg:
        return "malformed_quote"
    if "field larger than field limit" in msg:
        return "field_too_large"
    return "malformed_csv"


def _wrong_delimiter(
    header: list[str], header_raw: str, source: CsvSource, expected: list[str]
) -> str | None:
    """Why the header seems split on another delimiter than the declared one, if it does."""
    wanted = set(expected)
    declared_hits = len(wanted.intersection(header))
    best: tuple[int, int, str] | None = None
    for cand in _CANDIDATE_DELIMITERS:
        if cand == source.delimiter:
            continue
        try:
            alt = next(
                csv.reader(
                    io.StringIO(header_raw, newline=""), delimiter=cand, quotechar=source.quote
                ),
                [],
            )
        except csv.Error:
            continue
        hits = len(wanted.intersection(alt))
        if len(alt) > 1 and (hits > declared_hits or len(header) == 1):
            score = (hits, len(alt), cand)
            best = max(best, score) if best else score
    if best is None:
        return None
    hits, fields, cand = best
    return (
        f"the header is {len(header)} field(s) when split on the declared delimiter "
        f"{source.delimiter!r}, but {fields} fields when split on {cand!r} ({hits} of the "
        f"contract's {len(expected)} columns found that way): the file seems delimited by "
        f"{cand!r}, not {source.delimiter!r}. Ask the sender to fix it, or if that is the agreed "
        f"format set `delimiter: {cand!r}` in the source config"
    )


def _plan(
    header: list[str], header_raw: str, source: CsvSource, contract: Contract, label: str
) -> ColumnPlan:
    """Where each contract column is in the header; rejects a wrong delimiter or missing column."""
    expected = contract.column_names
    if set(expected) - set(header):
        problem = _wrong_delimiter(header, header_raw, source, expected)
        if problem:
            raise FileRejected(label, "wrong_delimiter", problem)
    return plan_columns(label, header, contract)


def _parse(
    text: io.TextIOBase,
    source: CsvSource,
    contract: Contract,
    label: str,
    writer: ExtractWriter,
    batch_size: int,
) -> _Counts:
    counts = _Counts()
    # The lines of the record being parsed: csv.reader pulls lines one at a time and returns as
    # soon as a record is complete, so after each record `buf` holds exactly its lines.
    buf: list[str] = []

    def physical_lines() -> Iterator[str]:
        for line in text:
            buf.append(line)
            yield line

    reader = csv.reader(
        physical_lines(),
        delimiter=source.delimiter,
        quotechar=source.quote,
        doublequote=True,
        skipinitialspace=source.skip_initial_space,
        quoting=csv.QUOTE_MINIMAL,
        strict=True,  # `"O"Brien` is an error to quarantine, not silently `OBrien`
    )
    line_no = 1  # the physical line the next record starts on

    # --- header: the first line that is not blank
    header: list[str] | None = None
    while header is None:
        try:
            row = next(reader)
        except StopIteration:
            raise FileRejected(
                label, "empty_file", "the file holds no header line, only blank lines"
            ) from None
        except csv.Error as e:
            raise FileRejected(
                label, "malformed_header", f"the header (line {line_no}) cannot be parsed: {e}"
            ) from None
        if not row or (len(row) == 1 and len(buf) == 1 and not buf[0].strip()):
            counts.delivered += 1
            counts.blank_lines += 1
        else:
            header = row
        line_no += len(buf)
        header_raw = "".join(buf)
        buf.clear()

    plan = _plan(header, header_raw, source, contract, label)
    counts.columns_dropped = tuple(plan.dropped)

    # --- records
    ncols = len(header)
    identity = plan.identity
    project: Callable[[list[str]], Sequence[str]]
    if len(plan.index) == 1:
        only = plan.index[0]

        def project(r: list[str]) -> Sequence[str]:
            return (r[only],)
    else:
        project = operator.itemgetter(*plan.index)
    dedupe = DuplicateFilter()
    is_duplicate, seen_text = dedupe.is_duplicate, dedupe.seen_text
    separators = len(plan.index) - 1
    quarantine = writer.quarantine
    # Accepted rows wait for their batch as one NUL-joined string each (not GC-tracked, and
    # already built for the duplicate check); Arrow splits them again when writing.
    texts: list[str] = []
    lines: list[int] = []
    delivered = counts.delivered
    blank = counts.blank_lines
    duplicates = 0
    while True:
        try:
            for row in reader:
                n = len(buf)
                start = line_no
                line_no += n
                delivered += 1
                width = len(row)
                if width == ncols:
                    if row == header:
                        quarantine(
                            start,
                            "repeated_header",
                            "the row repeats the header (files concatenated upstream?)",
                            _strip_eol("".join(buf)),
                        )
                    else:
                        values = row if identity else project(row)
                        joined = "\x00".join(values)
                        if joined.count("\x00") == separators:
                            if seen_text(joined):
                                duplicates += 1
                            else:
                                texts.append(joined)
                                lines.append(start)
                                if len(texts) >= batch_size:
                                    writer.write_joined(texts, lines)
                                    texts, lines = [], []
                        elif is_duplicate(values):  # a NUL inside a value: the slow path
                            duplicates += 1
                        else:
                            writer.write_joined(texts, lines)  # keep the rows in line order
                            texts, lines = [], []
                            writer.write_rows([values], [start])
                elif width == 0 or (width == 1 and n == 1 and not buf[0].strip()):
                    blank += 1
                else:
                    quarantine(
                        start,
                        "too_many_columns" if width > ncols else "missing_columns",
                        f"{width} field(s) where the header has {ncols}"
                        + (f" (the record spans lines {start}-{line_no - 1})" if n > 1 else ""),
                        _strip_eol("".join(buf)),
                    )
                buf.clear()
            break
        except csv.Error as e:
            reason = _parser_reason(e)
            start = line_no
            detail = (
                f"the CSV parser failed in the record starting at line {start} ({e}); each of "
                f"its {len(buf)} line(s) is quarantined on its own"
            )
            for i, raw in enumerate(buf):
                quarantine(start + i, reason, detail, _strip_eol(raw))
            delivered += len(buf)
            line_no += len(buf)
            buf.clear()
    writer.write_joined(texts, lines)
    counts.delivered = delivered
    counts.blank_lines = blank
    counts.duplicates = duplicates
    return counts


# --- the fast path: DuckDB reads a file that holds nothing to quarantine --------------------------
#
# Most deliveries are clean. For those, DuckDB's parallel reader gives the same rows as the
# parser above, faster; whenever the file holds anything the two could read differently, or
# anything to quarantine, the fast path declines and the parser above reads the file. It declines
# unless: the file is valid UTF-8 with no carriage return and no NUL (checked in the pass over
# the bytes that hashes them; DuckDB 2.0.1 in strict mode misreads CRLF line ends, reading no
# rows or failing, so such files go to the parser); DuckDB reads it in strict mode without error,
# one row per physical line (so no blank line and no quoted line break); every line, read again
# as text, holds exactly the header's number of fields, each either plain (no quote in it) or
# wholly quoted (DuckDB drops spaces beside a quote and trailing empty fields, where the parser
# keeps or quarantines them); no row repeats the header and no field is over the parser's limit.
# Exact duplicates are dropped by the first line that holds them, as above.
# `tests/test_sources.py` checks on generated files that the two readers agree or the fast one
# declines.

_SCAN_CHUNK = 8 << 20
_FIELD_LIMIT = csv.field_size_limit()


@dataclass(frozen=True)
class _Scan:
    sha256: str
    size: int
    lines: int
    simple: bool
    """Valid UTF-8 with no carriage return and no NUL."""


def _scan(path: Path) -> _Scan:
    sha, size, lines = hashlib.sha256(), 0, 0
    decoder = codecs.getincrementaldecoder("utf-8")()
    simple, last = True, b""
    with path.open("rb") as f:
        while chunk := f.read(_SCAN_CHUNK):
            sha.update(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
            if simple:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    simple = False
                simple = simple and b"\r" not in chunk and b"\x00" not in chunk
            last = chunk[-1:]
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        simple = False
    lines += bool(last and last != b"\n")  # a last line without its line feed
    return _Scan(sha.hexdigest(), size, lines, simple)


def _field_counts(
    con: duckdb.DuckDBPyConnection, path: Path, source: CsvSource, width: int
) -> tuple[int, int]:
    """(lines after the header, lines not made of exactly ``width`` plain or wholly quoted
    fields), reading each line as text."""
    d, q = re.escape(source.delimiter), re.escape(source.quote)
    field = f"(?:[^{q}{d}]*|{q}(?:[^{q}]|{q}{q})*{q})"
    lines, ragged = con.execute(
        """
        WITH t AS (
            SELECT CASE WHEN NOT contains(line, $q) THEN line
                        WHEN regexp_full_match(line, $grammar)
                        THEN regexp_replace(line, $quoted, '', 'g') END AS plain
            FROM read_csv($path, header = false, skip = 1, auto_detect = false, delim = $nul,
                          quote = '', escape = '', new_line = '\\n', columns = {'line': 'VARCHAR'}))
        SELECT count(*), count(*) FILTER (
            plain IS NULL OR length(plain) - length(replace(plain, $d, '')) + 1 <> $width)
        FROM t
        """,
        {
            "q": source.quote, "d": source.delimiter, "nul": "\x00", "path": str(path),
            "grammar": f"{field}(?:{d}{field})*", "quoted": f"{q}(?:[^{q}]|{q}{q})*{q}",
            "width": width,
        },
    ).fetchall()[0]  # fmt: skip
    return int(lines), int(ragged)


def _ascending(values: pa.Array) -> bool:
    return len(values) < 2 or bool(pc.all(pc.greater(values[1:], values[:-1])).as_py())


def _connect(settings: DuckDBConfig | None) -> duckdb.DuckDBPyConnection:
    """DuckDB for the fast path: the project's limits, rows kept in file order, no downloads."""
    config: dict[str, str | bool | int | float | list[str]] = {
        "preserve_insertion_order": True,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if settings is not None:
        settings.temp_directory.mkdir(parents=True, exist_ok=True)
        config |= {
            "memory_limit": settings.memory_limit,
            "temp_directory": str(settings.temp_directory),
            "threads": settings.threads,
        }
    return duckdb.connect(config=config)


def _read_fast(
    path: Path, scan: _Scan, source: CsvSource, contract: Contract, label: str,
    writer: ExtractWriter, settings: DuckDBConfig | None,
) -> _Counts | None:  # fmt: skip
    """Read a clean file with DuckDB into ``writer``; None when it declines (what it wrote is
    then discarded with the writer)."""
    with path.open("rb") as f:
        header_raw = f.readline().decode("utf-8-sig")
    if not header_raw.strip():  # a blank first line: the parser counts it and reads on
        return None
    try:
        header = next(
            csv.reader(
                [header_raw], delimiter=source.delimiter, quotechar=source.quote, strict=True
            )
        )
    except (csv.Error, StopIteration):
        return None
    plan = _plan(header, header_raw, source, contract, label)
    width = len(header)
    cols = [f"c{i}" for i in range(width)]
    types = ", ".join(f"'{c}': 'VARCHAR'" for c in cols)
    con = _connect(settings)
    try:
        if memory_limit_bytes(con) < 4 * scan.size:  # the parser's memory stays flat instead
            return None
        try:
            con.execute(
                "CREATE TABLE rows AS SELECT * FROM read_csv(?, delim = ?, quote = ?, "
                "escape = ?, header = false, skip = 1, auto_detect = false, strict_mode = true, "
                "null_padding = false, allow_quoted_nulls = false, new_line = '\\n', "
                f"columns = {{{types}}})",
                [str(path), source.delimiter, source.quote, source.quote],
            )
        except duckdb.Error:
            return None
        same_as_header = " AND ".join(
            f"coalesce({c}, '') = {sql_str(h)}" for c, h in zip(cols, header, strict=True)
        )
        too_long = " OR ".join(f"length({c}) > {_FIELD_LIMIT}" for c in cols)
        rows, repeats, long = con.sql(
            f"SELECT count(*), count(*) FILTER ({same_as_header}), "
            f"count(*) FILTER ({too_long}) FROM rows"
        ).fetchall()[0]
        lines, ragged = _field_counts(con, path, source, width)
        if not rows == lines == scan.lines - 1 or ragged or repeats or long:
            return None
        # rowid is the row's place in the file (the table was filled in file order, and a scan
        # returns it in that order); an exact repeat is dropped, the first line that holds it kept
        values = [f"coalesce(c{i}, '')" for i in plan.index]
        names = ", ".join(
            f"{v} AS {quote(n)}" for v, n in zip(values, contract.column_names, strict=True)
        )
        key = ", ".join(values)
        (repeated,) = con.sql(
            f"SELECT count(*) FROM (SELECT hash({key}) AS h FROM rows GROUP BY h "
            "HAVING count(*) > 1)"
        ).fetchall()[0]
        first = (
            f" QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY rowid) = 1 ORDER BY rowid"
            if repeated
            else ""
        )
        reader = con.sql(f"SELECT {names}, rowid + 2 AS {quote(LINE)} FROM rows{first}")
        previous = 0
        for batch in reader.to_arrow_reader(BATCH_ROWS):
            numbers = batch.column(LINE)
            if len(numbers):
                if numbers[0].as_py() <= previous or not _ascending(numbers):
                    return None  # not in file order after all: let the parser read it
                previous = numbers[-1].as_py()
            writer.write_batch(batch.cast(writer.schema))
    finally:
        con.close()
    return _Counts(
        delivered=rows, duplicates=rows - writer.accepted, columns_dropped=tuple(plan.dropped)
    )


def _check_unchanged(path: Path, label: str, start: os.stat_result, read: int) -> None:
    now = path.stat()
    if read != start.st_size or (now.st_size, now.st_mtime_ns) != (
        start.st_size,
        start.st_mtime_ns,
    ):
        raise TransientSourceError(
            f"{label}: the file changed while it was read ({start.st_size} bytes at the start, "
            f"{read} read, {now.st_size} now): it is probably still being written; retry once "
            "the delivery is complete"
        )


def read_csv_extract(
    agency: Agency,
    contract: Contract,
    out_dir: Path,
    *,
    batch_size: int = BATCH_ROWS,
    duckdb_config: DuckDBConfig | None = None,
) -> ExtractResult:
    """Read an agency's CSV delivery into accepted and quarantine Parquet files in ``out_dir``.

    Example:
        >>> result = read_csv_extract(agency, contract, Path("out/work"))  # doctest: +SKIP
        >>> result.delivered == (  # doctest: +SKIP
        ...     result.accepted + result.quarantined + result.blank_lines + result.duplicates
        ... )
        True

    Raises:
        FileRejected: the file as a whole breaks the contract (``reason`` says how).
        DeliveryMissing: no file to read.
        TransientSourceError: the file changed while it was read (still being written).
    """
    source = agency.source
    if not isinstance(source, CsvSource):
        raise TypeError(f"agency {agency.name!r} does not have a CSV source")
    path = resolve_delivery(source.path, source.pattern, agency=agency.name, kind="CSV")
    label = str(path)
    start = path.stat()
    if start.st_size == 0:
        raise FileRejected(
            label,
            "empty_file",
            "the file is empty (0 bytes): a failed delivery; ask the sender to deliver it again",
        )
    _check_head(path, label, source.encoding, agency.name)
    if source.encoding == "utf-8" and not source.skip_initial_space:
        scan = _scan(path)
        if scan.simple:
            with ExtractWriter(out_dir, agency.name, contract) as writer:
                fast = _read_fast(path, scan, source, contract, label, writer, duckdb_config)
                if fast is not None:
                    _check_unchanged(path, label, start, scan.size)
                    return finish(
                        writer,
                        agency=agency.name,
                        source=label,
                        sha256=scan.sha256,
                        delivered=fast.delivered,
                        blank_lines=0,
                        duplicates=fast.duplicates,
                        columns_dropped=list(fast.columns_dropped),
                    )
            log.debug("%s: read by the line-by-line parser (not plain enough for DuckDB)", label)
    codec = "utf-8-sig" if source.encoding == "utf-8" else source.encoding

    with (
        path.open("rb", buffering=0) as raw,
        ExtractWriter(out_dir, agency.name, contract) as writer,
    ):
        hashing = _HashingReader(raw, source.encoding)
        text = io.TextIOWrapper(
            io.BufferedReader(hashing, buffer_size=1 << 20), encoding=codec, newline=""
        )
        try:
            counts = _parse(text, source, contract, label, writer, batch_size)
        except UnicodeDecodeError:
            raise _decode_rejection(path, label, source.encoding, agency.name) from None
        rejection = _stream_rejection(hashing, path, label, source.encoding, agency.name)
        if rejection:
            raise rejection
        _check_unchanged(path, label, start, hashing.size)
        return finish(
            writer,
            agency=agency.name,
            source=label,
            sha256=hashing.sha256.hexdigest(),
            delivered=counts.delivered,
            blank_lines=counts.blank_lines,
            duplicates=counts.duplicates,
            columns_dropped=list(counts.columns_dropped),
        )
