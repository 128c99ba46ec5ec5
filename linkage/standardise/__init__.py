"""Standardisation: an agency's raw extract -> the canonical person record (schemas/canonical.py).

Every standardiser is a pure function from a polars expression to a polars expression (or to a
``(value, flag)`` pair), so the whole extract is one vectorised lazy query and each rule can be
tried on a Series::

    import polars as pl
    from linkage.standardise import std_name
    pl.select(std_name(pl.lit(pl.Series(["  Zoë O’Brien "])))).item()   # 'ZOE OBRIEN'

Placeholder values (UNKNOWN, BABY OF ..., 1900-01-01, 0000000000, NFA, ...) are listed in one
place, :mod:`linkage.standardise.placeholders`.
"""

from linkage.standardise.addresses import combine_address, is_address_placeholder, std_address
from linkage.standardise.canonical import (
    DUCKDB_TO_POLARS,
    FIELD_FLAGS,
    StandardiseResult,
    canonical_schema,
    count_flags,
    standardise_extract,
    to_canonical,
)
from linkage.standardise.codes import map_codes, map_sex
from linkage.standardise.dates import EARLIEST_DOB, DateFormat, compile_format, parse_dob, std_dob
from linkage.standardise.identifiers import (
    check_identifier,
    check_nhs_number,
    check_ni_number,
    check_plain_identifier,
    nhs_check_digit_ok,
    std_identifier,
)
from linkage.standardise.names import (
    check_name_from_full,
    check_names_from_parts,
    is_name_placeholder,
    std_family_name,
    std_given_name,
    std_name,
    strip_titles,
)
from linkage.standardise.postcodes import (
    FORMATTED_POSTCODE_RE,
    check_postcode,
    postcode_district,
    std_postcode,
)
from linkage.standardise.text import blank_to_null, clean_source, fold_accents, fold_upper, std_text

__all__ = [
    "DUCKDB_TO_POLARS",
    "EARLIEST_DOB",
    "FIELD_FLAGS",
    "FORMATTED_POSTCODE_RE",
    "DateFormat",
    "StandardiseResult",
    "blank_to_null",
    "canonical_schema",
    "count_flags",
    "check_identifier",
    "check_name_from_full",
    "check_names_from_parts",
    "check_nhs_number",
    "check_ni_number",
    "check_plain_identifier",
    "check_postcode",
    "clean_source",
    "combine_address",
    "compile_format",
    "fold_accents",
    "fold_upper",
    "is_address_placeholder",
    "is_name_placeholder",
    "map_codes",
    "map_sex",
    "nhs_check_digit_ok",
    "parse_dob",
    "postcode_district",
    "standardise_extract",
    "std_address",
    "std_dob",
    "std_family_name",
    "std_given_name",
    "std_identifier",
    "std_name",
    "std_postcode",
    "std_text",
    "strip_titles",
    "to_canonical",
]
