"""The canonical person record: what every agency's extract is mapped to before linkage.

Each standardised extract is a Parquet file with exactly these columns, in this order, followed by
one ``id_<scheme>`` column per identifier scheme declared in the project configuration
(for example ``id_nhs_number``). ``docs/canonical-record.md`` is generated from this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PiiClass = Literal["direct_identifier", "quasi_identifier", "other"]


@dataclass(frozen=True)
class Field:
    name: str
    duckdb_type: str
    pii: PiiClass
    description: str


CANONICAL_FIELDS: tuple[Field, ...] = (
    Field(
        "record_key",
        "VARCHAR",
        "other",
        "Unique key of the record across agencies: `<agency>:<source_record_id>`.",
    ),
    Field(
        "agency", "VARCHAR", "other", "Name of the agency that supplied the record (config key)."
    ),
    Field(
        "source_record_id",
        "VARCHAR",
        "quasi_identifier",
        "The agency's own record identifier, as text (leading zeros kept).",
    ),
    Field(
        "given_name",
        "VARCHAR",
        "direct_identifier",
        "First given name, standardised: upper case, accents folded, titles and punctuation "
        "removed. NULL when absent or a placeholder (UNKNOWN, BABY, ...).",
    ),
    Field(
        "middle_names",
        "VARCHAR",
        "direct_identifier",
        "Further given names, standardised like `given_name`, space separated.",
    ),
    Field(
        "family_name",
        "VARCHAR",
        "direct_identifier",
        "Family name, standardised like `given_name`; hyphens and apostrophes removed.",
    ),
    Field(
        "date_of_birth",
        "DATE",
        "quasi_identifier",
        "Date of birth. NULL when absent, unparseable, a placeholder (1900-01-01...), in the "
        "future or before 1890.",
    ),
    Field(
        "dob_precision",
        "VARCHAR",
        "other",
        "`day`, `month` or `year`: how much of `date_of_birth` the source actually held "
        "(a month-precision date is stored as the first of the month). NULL with no date.",
    ),
    Field(
        "sex",
        "VARCHAR",
        "quasi_identifier",
        "`M`, `F` or `X` (other/indeterminate) after the agency's code map; NULL if unknown.",
    ),
    Field(
        "address",
        "VARCHAR",
        "direct_identifier",
        "Address line(s) combined, standardised: upper case, punctuation removed, single spaces, "
        "street types abbreviated (ROAD -> RD). NULL when absent or a placeholder (NFA, NO FIXED "
        "ABODE).",
    ),
    Field(
        "postcode",
        "VARCHAR",
        "quasi_identifier",
        "UK postcode in the standard `OUTWARD INWARD` form (`SW1A 1AA`); NULL when invalid.",
    ),
    Field(
        "postcode_district",
        "VARCHAR",
        "other",
        "Outward part of the postcode (`SW1A`), used for blocking.",
    ),
    Field("birth_year", "INTEGER", "other", "Year of `date_of_birth`, used for blocking."),
    Field(
        "quality_flags",
        "VARCHAR[]",
        "other",
        "Codes of what standardisation nulled or doubted: `nhs_number_invalid`, "
        "`nhs_number_placeholder`, `given_name_placeholder`, `dob_placeholder`, "
        "`dob_out_of_range`, `dob_unparseable`, `postcode_invalid`, `sex_unmapped`, ...",
    ),
)

IDENTIFIER_PREFIX = "id_"


#: Beside the canonical fields in standardised files and ``records``: an MD5 digest of the row as
#: delivered (its contract columns' values), which lets the next run reuse an unchanged row's
#: record (:mod:`linkage.incremental`).
SOURCE_HASH = "source_hash"


def identifier_column(scheme: str) -> str:
    """Name of the canonical column that holds identifier ``scheme``."""
    return f"{IDENTIFIER_PREFIX}{scheme}"


def render_markdown() -> str:
    """``docs/canonical-record.md``: the canonical record, field by field (generated; see tests)."""
    lines = [
        "# The canonical person record",
        "",
        "<!-- Generated from schemas/canonical.py by `make docs`; do not edit by hand. -->",
        "",
        "Every agency's accepted rows are mapped (by configuration) to this record before linkage.",
        "A field a source does not hold is NULL for all its records, and the model treats it",
        "as unknown, never as disagreement. After these fields come one `id_<scheme>` column",
        "(VARCHAR, direct identifier) per identifier scheme declared in the project config,",
        "validated per the scheme's `validation` (`nhs_number`: modulus 11, repdigits and the",
        "999 test range nulled;",
        "`ni_number`: format and unallocated prefixes; `pnc`: check letter, short form expanded;",
        "`none`: upper case, spaces removed, placeholders nulled).",
        "",
        "| field | type | personal data | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for f in CANONICAL_FIELDS:
        lines.append(
            f"| `{f.name}` | {f.duckdb_type} | {f.pii.replace('_', ' ')} | {f.description} |"
        )
    return "\n".join(lines) + "\n"
