"""Every placeholder value the standardisers null, in one place.

A placeholder is a value a system or a clerk typed because the real one was not known (UNKNOWN,
BABY OF ..., 1900-01-01, 0000000000). Left in the data, one placeholder shared by hundreds of
people links them together (400 people became one cluster in a test here), so each is nulled and
the record carries a ``<field>_placeholder`` flag instead.

Name and address lists are written in *standardised* form (upper case, accents folded,
punctuation and digits turned into single spaces), because they are compared after
standardisation: ``N/A`` standardises to ``N A``, ``Twin 1`` to ``TWIN``.
"""

from __future__ import annotations

import re
from datetime import date

# --- names ----------------------------------------------------------------------------------------

#: Titles removed from the start of given names and full names (``MR JOHN`` -> ``JOHN``).
#: A value made only of titles (``MR``) carries no name and is treated as a placeholder.
NAME_TITLES: tuple[str, ...] = ("MR", "MRS", "MS", "MISS", "DR", "PROF", "REV", "SIR", "MX")

#: Whole standardised values that mean "no name". ``NA`` is kept although Na is a real Korean and
#: Chinese name: a false merge through a shared placeholder costs more than a lost name.
NAME_PLACEHOLDERS: tuple[str, ...] = (
    "UNKNOWN",
    "UNK",
    "UNKN",
    "NOT KNOWN",
    "NOTKNOWN",
    "NK",
    "N K",
    "NA",
    "N A",
    "NULL",
    "NIL",
    "NONE",
    "NO NAME",
    "NONAME",
    "UNNAMED",
    "NOT STATED",
    "NOT GIVEN",
    "NOT RECORDED",
    "NOT SPECIFIED",
    "WITHHELD",
    "REFUSED",
    "REDACTED",
    "TBC",
    "TBA",
    "TEST",
    "TESTING",
    "DUMMY",
    "ANON",
    "ANONYMOUS",
    "PATIENT",
    "DECEASED",
    "INFANT",
    "NEWBORN",
    "MALE",
    "FEMALE",
    # two-word forms; "UNKNOWN <anything>" is not a pattern, so that the full name
    # "UNKNOWN KOWALSKI" keeps its family name
    "UNKNOWN MALE",
    "UNKNOWN FEMALE",
    "UNKNOWN PERSON",
    "UNKNOWN PATIENT",
    "UNKNOWN UNKNOWN",
    "TEST PATIENT",
    "TEST PERSON",
    "TEST TEST",
    "ANON ANON",
    "NOT APPLICABLE",
)

#: Regular expressions (matched against the whole standardised value) for placeholder families.
NAME_PLACEHOLDER_PATTERNS: tuple[str, ...] = (
    r"BABY(?: .*)?",  # BABY, BABY OF SMITH, BABY BOY
    r"TWIN(?: [A-Z]+)?",  # TWIN 1 / TWIN 2 (digits are removed first), TWIN A, TWIN ONE
    r"TRIPLET(?: [A-Z]+)?",
    r"X+",  # X, XX, XXX, ...
    r"ZZ+",  # ZZ, ZZZ (a single Z can be an initial)
)

#: Extra placeholders for the middle-names field only (``NMN`` = no middle name).
MIDDLE_NAME_PLACEHOLDERS: tuple[str, ...] = ("NMN", "NO MIDDLE NAME", "NO MIDDLE NAMES")

# --- addresses ------------------------------------------------------------------------------------

#: "No fixed abode" and its spellings: anywhere in the address (as whole words), the address is
#: nulled, because the remaining words (a town) are not an address and are shared by many people.
NO_FIXED_ABODE_PATTERNS: tuple[str, ...] = (
    r"NFA",
    r"N F A",
    r"NO FIXED ABODE",
    r"NO FIXED ADDRESS",
    r"NO FIXED ABOARD",
)

#: Whole address components (or whole addresses) that mean "unknown": a component equal to one of
#: these is skipped when the address columns are combined (``flat = NONE`` is common).
ADDRESS_PLACEHOLDERS: tuple[str, ...] = (
    "UNKNOWN",
    "UNK",
    "NOT KNOWN",
    "NK",
    "N K",
    "NONE",
    "NA",
    "N A",
    "NULL",
    "NIL",
    "NOT STATED",
    "NOT GIVEN",
    "NOT RECORDED",
    "NO ADDRESS",
    "ADDRESS UNKNOWN",
    "TBC",
    "TBA",
    "X",
    "XX",
    "XXX",
)

# --- dates ----------------------------------------------------------------------------------------

#: Dates systems use as "no date". 1970-01-01 (the Unix epoch) is deliberately NOT here: about
#: 1 in 365 people born in 1970 really have it, and nulling it would throw that evidence away.
#: Epoch spikes are better caught by frequency checks on the extract (bad-inputs D8).
DOB_PLACEHOLDERS: tuple[date, ...] = (
    date(1, 1, 1),  # .NET / Python minimum
    date(1753, 1, 1),  # SQL Server datetime minimum
    date(1800, 1, 1),
    date(1899, 12, 30),  # Excel / OLE automation day zero
    date(1899, 12, 31),
    date(1900, 1, 1),  # the usual "unknown DOB"
    date(1901, 1, 1),
    date(9999, 12, 31),
)

# --- identifiers ----------------------------------------------------------------------------------

#: NHS numbers: every repdigit passes the modulus-11 check, so they are listed explicitly.
NHS_NUMBER_PLACEHOLDERS: tuple[str, ...] = tuple(str(d) * 10 for d in range(10))
#: NHS numbers starting with this are reserved for test data (bad-inputs D3).
NHS_NUMBER_TEST_PREFIX = "999"

#: National Insurance numbers: the prefix HMRC reserves for examples, and the well-known examples.
NI_NUMBER_PLACEHOLDER_PREFIXES: tuple[str, ...] = ("QQ",)
NI_NUMBER_PLACEHOLDERS: tuple[str, ...] = ("AA000000A", "AB123456C", "AA123456A")

#: Values of an identifier with no validation rule that mean "unknown" (after upper case and with
#: spaces removed). All-zero values (``0``, ``0000``) and punctuation-only values are added by rule.
IDENTIFIER_PLACEHOLDERS: tuple[str, ...] = (
    "UNKNOWN",
    "UNK",
    "NOTKNOWN",
    "NK",
    "NA",
    "N/A",
    "NULL",
    "NIL",
    "NONE",
    "TBC",
    "TBA",
    "X",
    "XX",
    "XXX",
)


def whole_value_regex(values: tuple[str, ...], patterns: tuple[str, ...] = ()) -> str:
    """One anchored regular expression that matches any of ``values`` (literal) or ``patterns``."""
    alternatives = [re.escape(v) for v in values] + list(patterns)
    return "^(?:" + "|".join(alternatives) + ")$"
