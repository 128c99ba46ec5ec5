"""An agency's raw extract mapped and standardised to the canonical person record.

``to_canonical`` builds one lazy polars query (no Python per row); ``standardise_extract`` runs it
from Parquet to Parquet and returns only a path and counts, never a person's values.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from linkage.config import Agency, IdentifierScheme
from linkage.errors import SourceError
from linkage.standardise.addresses import combine_address
from linkage.standardise.codes import map_sex
from linkage.standardise.dates import parse_dob
from linkage.standardise.identifiers import check_identifier
from linkage.standardise.names import NAME_FLAG_FIELDS, check_name_from_full, check_names_from_parts
from linkage.standardise.postcodes import check_postcode
from linkage.standardise.text import clean_source
from schemas.canonical import CANONICAL_FIELDS, SOURCE_HASH, identifier_column

logger = logging.getLogger(__name__)

#: How each DuckDB type of ``schemas/canonical.py`` is written by polars.
DUCKDB_TO_POLARS: dict[str, pl.DataType] = {
    "VARCHAR": pl.String(),
    "DATE": pl.Date(),
    "INTEGER": pl.Int32(),
    "VARCHAR[]": pl.List(pl.String()),
}

#: The flags standardisation can set, in the order they appear in ``quality_flags``
#: (identifier flags follow, per scheme in name order: invalid, placeholder, test_range).
FIELD_FLAGS: tuple[str, ...] = (
    "given_name_placeholder",
    "middle_names_placeholder",
    "family_name_placeholder",
    "dob_unparseable",
    "dob_placeholder",
    "dob_out_of_range",
    "sex_unmapped",
    "address_placeholder",
    "postcode_invalid",
    "postcode_placeholder",
)


@dataclass(frozen=True)
class StandardiseResult:
    """What ``standardise_extract`` wrote: the file, its row count, and records per quality flag."""

    path: Path
    rows: int
    flags: dict[str, int] = field(default_factory=dict)


def canonical_schema(identifiers: Mapping[str, IdentifierScheme]) -> pl.Schema:
    """Polars schema of a standardised extract: canonical fields, then sorted ``id_<scheme>``."""
    columns: dict[str, pl.DataType] = {
        f.name: DUCKDB_TO_POLARS[f.duckdb_type] for f in CANONICAL_FIELDS
    }
    for scheme in sorted(identifiers):
        columns[identifier_column(scheme)] = pl.String()
    return pl.Schema(columns)


def _null(dtype: pl.DataType) -> pl.Expr:
    return pl.lit(None, dtype=dtype)


def to_canonical(
    raw: pl.LazyFrame,
    agency: Agency,
    identifiers: Mapping[str, IdentifierScheme],
    *,
    today: date | None = None,
) -> pl.LazyFrame:
    """Map and standardise one agency's raw extract to the canonical person record.

    Args:
        raw: every source column as text (empty or blank means missing), plus ``_line``.
        agency: the agency, whose ``mapping`` names the source columns.
        identifiers: every identifier scheme of the project; each gets an ``id_<scheme>`` column,
            null where this agency does not map it.
        today: the date after which a date of birth is in the future (default: today).

    Returns:
        A lazy frame with exactly :func:`canonical_schema` (names, order and types), and the
        raw extract's ``source_hash`` after them when it has one.

    Raises:
        SourceError: the extract lacks a column the mapping reads.
        ValueError: the mapping uses an identifier scheme not in ``identifiers`` or a date format
            that is not supported.

    Example:
        >>> from linkage.config import load_config
        >>> cfg = load_config()
        >>> raw = pl.LazyFrame({c: ["x"] for c in cfg.agency("police").mapping.source_columns()})
        >>> out = to_canonical(raw, cfg.agency("police"), cfg.identifiers)
        >>> out.collect_schema().names()[:3]
        ['record_key', 'agency', 'source_record_id']
    """
    m = agency.mapping
    available = set(raw.collect_schema().names())
    missing = [c for c in m.source_columns() if c not in available]
    if missing:
        raise SourceError(
            f"agency {agency.name!r}: the extract has no column(s) {missing} that the mapping "
            "reads; fix the mapping in the project config or the extract's header"
        )
    unknown = sorted(set(m.identifiers) - set(identifiers))
    if unknown:
        raise ValueError(
            f"agency {agency.name!r} maps identifier scheme(s) {unknown} that are not declared "
            f"(declared: {sorted(identifiers)})"
        )

    # Step 1: each checker is one struct column, computed once (see linkage.standardise.text).
    structs: dict[str, pl.Expr] = {"__id": clean_source(pl.col(m.source_record_id))}
    flags: list[pl.Expr] = []  # in the order they appear in quality_flags

    name_columns = (m.given_name, m.middle_names, m.family_name)
    if any(c is not None for c in name_columns):
        structs["__names"] = check_names_from_parts(
            *(pl.col(c) if c is not None else None for c in name_columns)
        )
    if m.full_name is not None:
        # with separate name columns too, those win and the full name fills the gaps
        structs["__full"] = check_name_from_full(pl.col(m.full_name))

    def name_field(field_name: str) -> pl.Expr:
        parts = [pl.col(s).struct.field(field_name) for s in ("__names", "__full") if s in structs]
        return pl.coalesce(parts) if parts else _null(pl.String())

    for flag_field in NAME_FLAG_FIELDS:
        flags.extend(
            pl.col(s).struct.field(flag_field) for s in ("__names", "__full") if s in structs
        )

    if m.date_of_birth is not None:
        structs["__dob"] = parse_dob(
            pl.col(m.date_of_birth.column), m.date_of_birth.format, today=today
        )
        dob = pl.col("__dob").struct.field("date_of_birth")
        dob_precision = pl.col("__dob").struct.field("dob_precision")
        flags.append(pl.col("__dob").struct.field("dob_flag"))
    else:
        dob, dob_precision = _null(pl.Date()), _null(pl.String())

    if m.sex is not None:
        structs["__sex"] = map_sex(pl.col(m.sex.column), m.sex.codes)
        sex = pl.col("__sex").struct.field("value")
        flags.append(pl.col("__sex").struct.field("flag"))
    else:
        sex = _null(pl.String())

    if m.address is not None:
        structs["__address"] = combine_address(
            [pl.col(c) for c in m.address.columns], m.address.separator
        )
        address = pl.col("__address").struct.field("address")
        flags.append(pl.col("__address").struct.field("address_flag"))
    else:
        address = _null(pl.String())

    if m.postcode is not None:
        structs["__postcode"] = check_postcode(pl.col(m.postcode), m.postcode_format)
        postcode = pl.col("__postcode").struct.field("postcode")
        district = pl.col("__postcode").struct.field("postcode_district")
        flags.append(pl.col("__postcode").struct.field("postcode_flag"))
    else:
        postcode, district = _null(pl.String()), _null(pl.String())

    id_columns: list[pl.Expr] = []
    for scheme in sorted(identifiers):
        name = identifier_column(scheme)
        if scheme in m.identifiers:
            tmp = f"__{name}"
            structs[tmp] = check_identifier(
                pl.col(m.identifiers[scheme]),
                scheme=scheme,
                validation=identifiers[scheme].validation,
            )
            id_columns.append(pl.col(tmp).struct.field("value").alias(name))
            flags.append(pl.col(tmp).struct.field("flag"))
        else:
            id_columns.append(_null(pl.String()).alias(name))

    quality_flags = pl.concat_list(flags or [_null(pl.String())]).list.drop_nulls()
    if "__names" in structs and "__full" in structs:
        quality_flags = quality_flags.list.unique(maintain_order=True)

    # Step 2: the canonical columns, read from the structs.
    source_id = pl.col("__id")
    columns = {
        "record_key": pl.concat_str([pl.lit(f"{agency.name}:"), source_id]),
        "agency": pl.lit(agency.name),
        "source_record_id": source_id,
        "given_name": name_field("given_name"),
        "middle_names": name_field("middle_names"),
        "family_name": name_field("family_name"),
        "date_of_birth": dob,
        "dob_precision": dob_precision,
        "sex": sex,
        "address": address,
        "postcode": postcode,
        "postcode_district": district,
        "birth_year": dob.dt.year(),
        "quality_flags": quality_flags,
    }
    schema = canonical_schema(identifiers)
    exprs = [columns[f.name].cast(schema[f.name]).alias(f.name) for f in CANONICAL_FIELDS]
    exprs += [e.cast(pl.String) for e in id_columns]
    if SOURCE_HASH in available:  # carried through (linkage.incremental)
        structs[SOURCE_HASH] = pl.col(SOURCE_HASH)
        exprs.append(pl.col(SOURCE_HASH))
    return raw.select(**structs).select(exprs)


def standardise_extract(
    raw_path: Path,
    agency: Agency,
    identifiers: Mapping[str, IdentifierScheme],
    out_path: Path,
    *,
    today: date | None = None,
) -> StandardiseResult:
    """Standardise one raw Parquet extract into ``out_path`` (Parquet, written atomically).

    The file is written beside ``out_path`` under a temporary name and renamed into place, so a
    crash never leaves a half-written file under the real name.

    Returns:
        The path, the number of rows and, per quality flag, the number of records carrying it
        (flags that no record carries are left out).
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    query = to_canonical(pl.scan_parquet(raw_path), agency, identifiers, today=today)
    try:
        query.sink_parquet(tmp)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)

    rows, flags = count_flags(out_path)
    logger.info(
        "standardised %s: %d rows, %d flag(s) set -> %s",
        agency.name,
        rows,
        sum(flags.values()),
        out_path,
    )
    return StandardiseResult(path=out_path, rows=rows, flags=flags)


def count_flags(path: Path) -> tuple[int, dict[str, int]]:
    """A standardised file's rows, and per quality flag the records carrying it."""
    written = pl.scan_parquet(path)
    rows = int(written.select(pl.len()).collect().item())
    counts = (
        written.select(pl.col("quality_flags").explode().alias("flag"))
        .drop_nulls()
        .group_by("flag")
        .len()
        .sort("flag")
        .collect()
    )
    return rows, {str(f): int(n) for f, n in counts.iter_rows()}
