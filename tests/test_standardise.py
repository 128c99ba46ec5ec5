"""Standardisation of raw extracts into the canonical person record (linkage.standardise).

Each rule has small literal cases (including the values of bad-inputs D1-D11); hypothesis checks
the invariants (idempotence, nulls stay null, NHS numbers against an independent modulus-11 oracle,
dates against Python's calendar). All values are synthetic.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from collections.abc import Mapping as MappingOf
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from linkage.config import Agency, IdentifierScheme, load_config
from linkage.errors import SourceError
from linkage.standardise import (
    FIELD_FLAGS,
    FORMATTED_POSTCODE_RE,
    StandardiseResult,
    canonical_schema,
    check_identifier,
    check_name_from_full,
    check_names_from_parts,
    check_nhs_number,
    check_ni_number,
    check_plain_identifier,
    check_postcode,
    combine_address,
    compile_format,
    map_sex,
    parse_dob,
    standardise_extract,
    std_address,
    std_family_name,
    std_given_name,
    std_name,
    std_postcode,
    std_text,
    strip_titles,
    to_canonical,
)
from linkage.standardise.placeholders import DOB_PLACEHOLDERS, NAME_PLACEHOLDERS
from schemas.canonical import CANONICAL_FIELDS

TODAY = date(2025, 6, 30)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def apply(fn: Callable[[pl.Expr], pl.Expr], values: Sequence[str | None]) -> list:
    """Run an expression standardiser over a list of strings (as a polars Series)."""
    return pl.select(fn(pl.lit(pl.Series(values, dtype=pl.String)))).to_series().to_list()


def fields(struct: Callable[[pl.Expr], pl.Expr], values: Sequence[str | None], *names: str) -> list:
    """Run a struct-returning checker and read the named fields, one tuple per value."""
    df = pl.DataFrame({"v": pl.Series(values, dtype=pl.String)})
    return df.select(struct(pl.col("v")).alias("s")).unnest("s").select(names).rows()


def nhs_check_digit(first_nine: str) -> int | None:
    """Independent oracle: the modulus-11 check digit, or None when no digit is valid (10)."""
    total = sum(int(c) * (10 - i) for i, c in enumerate(first_nine))
    check = 11 - total % 11
    return None if check == 10 else 0 if check == 11 else check


# --- text -----------------------------------------------------------------------------------------


class TestText:
    def test_it_applies_nfkc_strips_collapses_and_upper_cases(self) -> None:
        assert apply(std_text, ["  ｊｏｈｎ\t  smith  ", "ﬁona", "a\u00a0b", "jo\u200bhn"]) == [
            "JOHN SMITH",
            "FIONA",
            "A B",
            "JOHN",
        ]

    def test_empty_and_whitespace_only_values_become_null(self) -> None:
        assert apply(std_text, ["", "   ", "\t\n", "\u200b", None]) == [None] * 5

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("smith ", "SMITH"),  # D11 trailing space
            ("SMITH", "SMITH"),  # D11 case
            ("Smith", "SMITH"),
            ("ＳＭＩＴＨ", "SMITH"),  # D11 full-width confusable
            ("S\u200bMITH", "SMITH"),  # zero-width space
        ],
    )
    def test_d11_variants_of_one_name_standardise_equal(self, raw: str, expected: str) -> None:
        assert apply(std_text, [raw]) == [expected]
        assert apply(std_name, [raw]) == [expected]


# --- names ----------------------------------------------------------------------------------------


class TestNames:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("Zoë", "ZOE"),
            ("ÉLODIE", "ELODIE"),
            ("Siobhán", "SIOBHAN"),
            ("Nguyễn", "NGUYEN"),
            ("Øyvind", "OYVIND"),
            ("Łukasz", "LUKASZ"),
            ("Ærø", "AERO"),
            ("Straße", "STRASSE"),
            ("O'Brien", "OBRIEN"),
            ("O’Brien", "OBRIEN"),  # typographic apostrophe (cp1252 0x92, bad-inputs A6)
            ("O`Brien", "OBRIEN"),
            ("O´Brien", "OBRIEN"),
            ('O"Brien', "O BRIEN"),  # A9 stray quote: punctuation, so a space
            ("Jоhn", "JOHN"),  # Cyrillic о in a Latin name (D11 confusable)
            ("Иван", "ИВАН"),  # a wholly Cyrillic name is kept as written
            ("李", "李"),
            ("j.  smith", "J SMITH"),
            ("Smith3", "SMITH"),
            ("Smith (deceased)", "SMITH DECEASED"),
            ("  ", None),
            ("123", None),
            (None, None),
        ],
    )
    def test_std_name(self, raw: str | None, expected: str | None) -> None:
        assert apply(std_name, [raw]) == [expected]

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("Smith-Jones", "SMITHJONES"),
            ("SMITH - JONES", "SMITHJONES"),
            ("Smith–Jones", "SMITHJONES"),  # en dash
            ("Jean-Paul", "JEANPAUL"),
        ],
    )
    def test_hyphens_join_the_parts_into_one_token(self, raw: str, expected: str) -> None:
        assert apply(std_name, [raw]) == [expected]

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("Mr John", "JOHN"),
            ("MRS. Jane", "JANE"),
            ("Dr Mr X Y", "X Y"),
            ("Prof Ann", "ANN"),
            ("Rev. Paul", "PAUL"),
            ("Sir Ian", "IAN"),
            ("Mx Sam", "SAM"),
            ("Miss Ann", "ANN"),
            ("Ms Ann", "ANN"),
            ("Mrsa", "MRSA"),  # a name that starts like a title is kept
            ("Mistral", "MISTRAL"),
            ("Mr", None),
        ],
    )
    def test_titles_are_stripped_from_given_names(self, raw: str, expected: str | None) -> None:
        assert apply(std_given_name, [raw]) == [expected]
        assert apply(lambda e: strip_titles(std_name(e)), [raw]) == [expected]

    def test_a_given_name_that_is_only_a_title_is_a_placeholder(self) -> None:
        rows = fields(
            lambda e: check_names_from_parts(e, None, None),
            ["Mr", "Dr."],
            "given_name",
            "given_name_flag",
        )
        assert rows == [(None, "given_name_placeholder")] * 2

    def test_titles_are_not_stripped_from_family_names(self) -> None:
        assert apply(std_family_name, ["Dr", "Sir"]) == ["DR", "SIR"]

    @pytest.mark.parametrize(
        "raw",
        [
            "UNKNOWN",
            "unknown",
            "Unk",
            "BABY",
            "Baby of Smith",
            "BABY OF JANE SMITH",
            "baby boy",
            "TWIN 1",
            "Twin 2",
            "twin a",
            "TEST",
            "test patient",
            "XXX",
            "XX",
            "X",
            "NONE",
            "NOT KNOWN",
            "NK",
            "N/A",
            "NA",
            "n.k.",
            "NULL",
            "ANON",
            "Anonymous",
            "PATIENT",
            "DECEASED",
            "?",
            "-",
            "123",
        ],
    )
    def test_placeholder_names_are_nulled_and_flagged(self, raw: str) -> None:
        rows = fields(
            lambda e: check_names_from_parts(e, None, e),
            [raw],
            "given_name",
            "family_name",
            "given_name_flag",
            "family_name_flag",
        )
        assert rows == [(None, None, "given_name_placeholder", "family_name_placeholder")]

    def test_real_names_close_to_placeholders_are_kept(self) -> None:
        rows = fields(
            lambda e: check_names_from_parts(e, None, e),
            ["Xavier", "Babyface", "Tester", "Nkechi", "Anna", "Twining"],
            "given_name",
            "given_name_flag",
        )
        assert rows == [
            ("XAVIER", None),
            ("BABYFACE", None),
            ("TESTER", None),
            ("NKECHI", None),
            ("ANNA", None),
            ("TWINING", None),
        ]

    def test_the_placeholder_list_lives_in_one_place_and_is_in_standardised_form(self) -> None:
        assert apply(std_name, list(NAME_PLACEHOLDERS)) == list(NAME_PLACEHOLDERS)

    def test_a_missing_name_is_null_without_a_flag(self) -> None:
        rows = fields(
            lambda e: check_names_from_parts(e, e, e),
            [None, "", "   "],
            "given_name",
            "given_name_flag",
            "middle_names_flag",
            "family_name_flag",
        )
        assert rows == [(None, None, None, None)] * 3

    def test_several_given_names_keep_the_first_and_prepend_the_rest_to_middle_names(self) -> None:
        df = pl.DataFrame(
            {
                "g": ["Mary Ann", "Mr John Paul", "Jean-Paul", "Ann", None],
                "m": ["Louise", None, "Marie", None, "Lee"],
                "f": ["Smith", "Jones", "Dupont", "Lee", "Ng"],
            }
        )
        s = check_names_from_parts(pl.col("g"), pl.col("m"), pl.col("f"))
        assert df.select(s.struct.field("given_name", "middle_names", "family_name")).rows() == [
            ("MARY", "ANN LOUISE", "SMITH"),
            ("JOHN", "PAUL", "JONES"),
            ("JEANPAUL", "MARIE", "DUPONT"),
            ("ANN", None, "LEE"),
            (None, "LEE", "NG"),
        ]

    def test_middle_name_placeholders_are_nulled_and_flagged(self) -> None:
        rows = fields(
            lambda e: check_names_from_parts(None, e, None),
            ["NMN", "Not Known", "Louise"],
            "middle_names",
            "middle_names_flag",
        )
        assert rows == [
            (None, "middle_names_placeholder"),
            (None, "middle_names_placeholder"),
            ("LOUISE", None),
        ]

    @pytest.mark.parametrize(
        ("raw", "expected", "flags"),
        [
            ("John Smith", ("JOHN", None, "SMITH"), (None, None)),
            ("John Paul George Smith", ("JOHN", "PAUL GEORGE", "SMITH"), (None, None)),
            ("  mr  john   smith ", ("JOHN", None, "SMITH"), (None, None)),
            ("Mary Smith-Jones", ("MARY", None, "SMITHJONES"), (None, None)),
            ("Zoë O’Brien", ("ZOE", None, "OBRIEN"), (None, None)),
            ("SMITH, John Paul", ("JOHN", "PAUL", "SMITH"), (None, None)),
            ("Van Der Berg, Mr Piet", ("PIET", None, "VAN DER BERG"), (None, None)),
            ("Smith", (None, None, "SMITH"), (None, None)),
            (None, (None, None, None), (None, None)),
            (
                "Baby of Jane Smith",
                (None, None, None),
                ("given_name_placeholder", "family_name_placeholder"),
            ),
            ("UNKNOWN", (None, None, None), ("given_name_placeholder", "family_name_placeholder")),
            ("Unknown Smith", (None, None, "SMITH"), ("given_name_placeholder", None)),
            ("John Unknown", ("JOHN", None, None), (None, "family_name_placeholder")),
            ("XXX XXX", (None, None, None), ("given_name_placeholder", "family_name_placeholder")),
        ],
    )
    def test_full_name_is_split_first_middle_last(
        self, raw: str | None, expected: tuple, flags: tuple
    ) -> None:
        rows = fields(
            check_name_from_full,
            [raw],
            "given_name",
            "middle_names",
            "family_name",
            "given_name_flag",
            "family_name_flag",
        )
        assert rows == [expected + flags]


# --- dates ----------------------------------------------------------------------------------------


def dob(values: Sequence[str | None], fmt: str, today: date = TODAY) -> list[tuple]:
    return fields(
        lambda e: parse_dob(e, fmt, today=today),
        values,
        "date_of_birth",
        "dob_precision",
        "dob_flag",
    )


class TestDates:
    @pytest.mark.parametrize(
        ("fmt", "raw"),
        [
            ("%Y-%m-%d", "1985-03-14"),
            ("%d/%m/%Y", "14/03/1985"),
            ("%m/%d/%Y", "03/14/1985"),
            ("%Y%m%d", "19850314"),
            ("%m%d%Y", "03141985"),
            ("%d-%b-%Y", "14-MAR-1985"),
            ("%d %B %Y", "14 March 1985"),
            ("%Y-%m-%d %H:%M:%S", "1985-03-14 00:00:00"),
        ],
    )
    def test_each_format_parses_with_day_precision(self, fmt: str, raw: str) -> None:
        assert dob([raw, f"  {raw} "], fmt) == [(date(1985, 3, 14), "day", None)] * 2

    def test_mdy_without_separators_reads_fixed_width_fields(self) -> None:
        # polars' own %m%d%Y parser reads 1231990 as 0990-12-31: we must not
        assert dob(["03141985", "12011990", "1231990", "3141985", "031419850"], "%m%d%Y") == [
            (date(1985, 3, 14), "day", None),
            (date(1990, 12, 1), "day", None),
            (None, None, "dob_unparseable"),
            (None, None, "dob_unparseable"),
            (None, None, "dob_unparseable"),
        ]

    def test_ymd_without_separators_needs_all_eight_digits(self) -> None:
        assert dob(["19850314", "1985031", "1985-03-14"], "%Y%m%d") == [
            (date(1985, 3, 14), "day", None),
            (None, None, "dob_unparseable"),
            (None, None, "dob_unparseable"),
        ]

    def test_separated_formats_accept_one_digit_day_and_month_like_strptime(self) -> None:
        assert dob(["1/2/1980", "01/02/1980"], "%d/%m/%Y") == [(date(1980, 2, 1), "day", None)] * 2

    @pytest.mark.parametrize(
        ("raw", "fmt"),
        [
            ("2021-02-30", "%Y-%m-%d"),  # D7 impossible date
            ("2021-02-29", "%Y-%m-%d"),  # not a leap year
            ("1900-02-29", "%Y-%m-%d"),  # century, not a leap year
            ("2021-04-31", "%Y-%m-%d"),
            ("2021-13-01", "%Y-%m-%d"),
            ("2021-00-10", "%Y-%m-%d"),
            ("2021-01-00", "%Y-%m-%d"),
            ("02302021", "%m%d%Y"),
            ("13011990", "%m%d%Y"),
            ("14/03/1985", "%m/%d/%Y"),  # B6 day in the month slot
            ("1985-03-14", "%d/%m/%Y"),  # B5 format drift
            ("14/03/85", "%d/%m/%Y"),
            ("not a date", "%Y-%m-%d"),
            ("1985-03-14T00:00", "%Y-%m-%d"),
        ],
    )
    def test_impossible_or_misformatted_dates_are_unparseable(self, raw: str, fmt: str) -> None:
        assert dob([raw], fmt) == [(None, None, "dob_unparseable")]

    def test_leap_days_that_exist_are_kept(self) -> None:
        assert dob(["2000-02-29", "2020-02-29"], "%Y-%m-%d") == [
            (date(2000, 2, 29), "day", None),
            (date(2020, 2, 29), "day", None),
        ]

    @pytest.mark.parametrize("placeholder", DOB_PLACEHOLDERS)
    def test_placeholder_dates_are_nulled_and_flagged(self, placeholder: date) -> None:
        raw = f"{placeholder.year:04d}-{placeholder.month:02d}-{placeholder.day:02d}"
        assert dob([raw], "%Y-%m-%d") == [(None, None, "dob_placeholder")]

    def test_d8_placeholders_in_the_agencies_formats(self) -> None:
        assert (
            dob(["01/01/1900", "01/01/1901"], "%d/%m/%Y") == [(None, None, "dob_placeholder")] * 2
        )
        assert dob(["19000101"], "%Y%m%d") == [(None, None, "dob_placeholder")]
        assert dob(["01011900", "12319999"], "%m%d%Y") == [(None, None, "dob_placeholder")] * 2

    def test_the_unix_epoch_is_kept_as_a_real_birth_date(self) -> None:
        assert dob(["1970-01-01"], "%Y-%m-%d") == [(date(1970, 1, 1), "day", None)]

    def test_d6_dates_before_1890_or_in_the_future_are_out_of_range(self) -> None:
        tomorrow = TODAY + timedelta(days=1)
        assert dob(
            ["1889-12-31", "1890-01-01", TODAY.isoformat(), tomorrow.isoformat(), "2999-01-01"],
            "%Y-%m-%d",
        ) == [
            (None, None, "dob_out_of_range"),
            (date(1890, 1, 1), "day", None),
            (TODAY, "day", None),
            (None, None, "dob_out_of_range"),
            (None, None, "dob_out_of_range"),
        ]

    def test_missing_dates_are_null_without_a_flag(self) -> None:
        assert dob([None, "", "   "], "%Y-%m-%d") == [(None, None, None)] * 3

    def test_month_and_year_formats_give_month_and_year_precision(self) -> None:
        assert dob(["03/1985", "13/1985"], "%m/%Y") == [
            (date(1985, 3, 1), "month", None),
            (None, None, "dob_unparseable"),
        ]
        assert dob(["1985"], "%Y") == [(date(1985, 1, 1), "year", None)]

    @pytest.mark.parametrize("fmt", ["%d/%m/%y", "%d/%m", "%Y-%j", "%d/%d/%Y", "%Y-%m-%"])
    def test_unsupported_formats_are_refused_when_the_query_is_built(self, fmt: str) -> None:
        with pytest.raises(ValueError, match="date format"):
            compile_format(fmt)

    @PROPERTY
    @given(
        st.lists(st.dates(min_value=date(1890, 1, 1), max_value=TODAY), min_size=1, max_size=40),
        st.sampled_from(["%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%Y%m%d", "%m%d%Y"]),
    )
    def test_any_real_date_written_in_a_format_reads_back(self, days: list[date], fmt: str) -> None:
        rows = dob([d.strftime(fmt) for d in days], fmt)
        expected = [
            (None, None, "dob_placeholder") if d in DOB_PLACEHOLDERS else (d, "day", None)
            for d in days
        ]
        assert rows == expected

    @PROPERTY
    @given(
        st.lists(st.text(alphabet="0123456789", min_size=8, max_size=8), min_size=1, max_size=40)
    )
    def test_eight_digit_strings_agree_with_the_calendar(self, values: list[str]) -> None:
        def oracle(s: str) -> date | None:
            try:
                return date(int(s[:4]), int(s[4:6]), int(s[6:]))
            except ValueError:
                return None

        got = [row[0] for row in dob(values, "%Y%m%d", today=date(9999, 12, 31))]
        expected = [
            d if d is not None and d >= date(1890, 1, 1) and d not in DOB_PLACEHOLDERS else None
            for d in map(oracle, values)
        ]
        assert got == expected

    @PROPERTY
    @given(st.lists(st.one_of(st.none(), st.text(max_size=20)), min_size=1, max_size=40))
    def test_arbitrary_text_never_raises_and_gets_a_date_or_a_flag(
        self, values: list[str | None]
    ) -> None:
        for value, (parsed, precision, flag) in zip(values, dob(values, "%d/%m/%Y"), strict=True):
            # Unicode White_Space, as polars strips it (Python's str.strip also strips \x1c-\x1f).
            blank = value is None or value.strip(UNICODE_WHITESPACE) == ""
            assert (parsed is None) == (precision is None)
            if blank:
                assert (parsed, flag) == (None, None)
            else:
                assert (parsed is None) != (flag is None)


UNICODE_WHITESPACE = (
    " \t\n\x0b\x0c\r\x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)


# --- sex ------------------------------------------------------------------------------------------


class TestSex:
    def test_codes_map_exactly_then_case_insensitively(self) -> None:
        codes = {"Male": "M", "Female": "F", "Unknown": None, "Other": "X"}
        rows = fields(
            lambda e: map_sex(e, codes),
            ["Male", " Female ", "male", "FEMALE", "Other", "Unknown", "unknown", None, "", "Mle"],
            "value",
            "flag",
        )
        assert rows == [
            ("M", None),
            ("F", None),
            ("M", None),
            ("F", None),
            ("X", None),
            (None, None),
            (None, None),
            (None, None),
            (None, None),
            (None, "sex_unmapped"),  # D10 code outside the set
        ]

    def test_numeric_codes(self) -> None:
        rows = fields(
            lambda e: map_sex(e, {"1": "M", "2": "F", "9": None}),
            ["1", "2", "9", "0", " 1"],
            "value",
            "flag",
        )
        assert rows == [("M", None), ("F", None), (None, None), (None, "sex_unmapped"), ("M", None)]

    def test_an_exact_key_wins_over_a_case_insensitive_one(self) -> None:
        rows = fields(lambda e: map_sex(e, {"m": "M", "M": "F"}), ["m", "M"], "value", "flag")
        assert rows == [("M", None), ("F", None)]


# --- addresses ------------------------------------------------------------------------------------


class TestAddresses:
    def test_std_address_removes_punctuation_and_keeps_digits(self) -> None:
        assert apply(std_address, ["Flat 2, 10-12 St. John’s Rd ", "  1  high st ", "", None]) == [
            "FLAT 2 10 12 ST JOHNS RD",
            "1 HIGH ST",
            None,
            None,
        ]

    def test_street_types_are_written_one_way_as_whole_words_only(self) -> None:
        assert apply(
            std_address,
            ["1 Station Road", "1 Station Rd.", "2 Roadside Close", "St John's Street",
             "Flat 3 Court Gardens, Crescent Avenue", "Saint Street"],
        ) == [
            "1 STATION RD",
            "1 STATION RD",
            "2 ROADSIDE CL",  # ROAD inside a word stays
            "ST JOHNS ST",
            "FLAT 3 CT GDNS CRES AVE",
            "SAINT ST",  # only full words are contracted: ST is never expanded
        ]  # fmt: skip

    def test_columns_are_combined_skipping_nulls_and_empties(self) -> None:
        df = pl.DataFrame(
            {
                "a": ["Flat 2", None, "", "NONE"],
                "b": ["10", "22", "5", "7"],
                "c": ["High St.", "Acacia Ave", "  ", "Low Rd"],
                "d": ["Leeds", None, "York", "Hull"],
            }
        )
        s = combine_address([pl.col(c) for c in "abcd"], ", ")
        assert df.select(s.struct.field("address", "address_flag")).rows() == [
            ("FLAT 2 10 HIGH ST LEEDS", None),
            ("22 ACACIA AVE", None),
            ("5 YORK", None),
            ("7 LOW RD HULL", None),  # a NONE flat is skipped, not flagged
        ]

    @pytest.mark.parametrize(
        "parts",
        [
            ["NFA", None],
            ["N.F.A.", "Leeds"],
            ["No Fixed Abode", None],
            ["no fixed abode, Leeds", None],
            ["UNKNOWN", None],
            ["None", ""],
            ["N/A", "n/k"],
            ["-", "."],
        ],
    )
    def test_d9_placeholder_addresses_are_nulled_and_flagged(self, parts: list[str | None]) -> None:
        df = pl.DataFrame(
            {"a": [parts[0]], "b": [parts[1]]}, schema={"a": pl.String, "b": pl.String}
        )
        s = combine_address([pl.col("a"), pl.col("b")])
        assert df.select(s.struct.field("address", "address_flag")).rows() == [
            (None, "address_placeholder")
        ]

    @pytest.mark.parametrize(
        ("separator", "expected"),
        [
            (" ", "10 A HIGH ST"),
            (", ", "10 A HIGH ST"),
            (" / ", "10 A HIGH ST"),
            ("", "10AHIGH ST"),
            (" and ", "10 AND A AND HIGH ST"),
        ],
    )
    def test_the_separator_is_applied_before_standardising(
        self, separator: str, expected: str
    ) -> None:
        df = pl.DataFrame({"a": ["10"], "b": ["a"], "c": ["High St."]})
        s = combine_address([pl.col("a"), pl.col("b"), pl.col("c")], separator)
        assert df.select(s.struct.field("address")).item() == expected

    def test_a_missing_address_is_null_without_a_flag(self) -> None:
        df = pl.DataFrame({"a": [None, " "]}, schema={"a": pl.String})
        s = combine_address([pl.col("a")])
        assert df.select(s.struct.field("address", "address_flag")).rows() == [(None, None)] * 2


# --- postcodes ------------------------------------------------------------------------------------


class TestPostcodes:
    @pytest.mark.parametrize(
        ("raw", "expected", "district"),
        [
            ("ls62ab", "LS6 2AB", "LS6"),
            ("LS6 2AB", "LS6 2AB", "LS6"),
            (" l s 6 2 a b ", "LS6 2AB", "LS6"),
            ("M1 1AE", "M1 1AE", "M1"),
            ("B33 8TH", "B33 8TH", "B33"),
            ("CR2 6XH", "CR2 6XH", "CR2"),
            ("DN55 1PT", "DN55 1PT", "DN55"),
            ("W1A 0AX", "W1A 0AX", "W1A"),
            ("EC1A1BB", "EC1A 1BB", "EC1A"),
            ("gir 0aa", "GIR 0AA", "GIR"),
            ("ＬＳ６ ２ＡＢ", "LS6 2AB", "LS6"),
        ],
    )
    def test_valid_postcodes_are_formatted(self, raw: str, expected: str, district: str) -> None:
        rows = fields(check_postcode, [raw], "postcode", "postcode_district", "postcode_flag")
        assert rows == [(expected, district, None)]

    @pytest.mark.parametrize(
        "raw", ["LS6", "LS62A", "12345", "LS6-2AB", "LS6 2AB X", "1S6 2AB", "LS6 22B", "SW1A1AAA"]
    )
    def test_invalid_postcodes_are_nulled_and_flagged(self, raw: str) -> None:
        rows = fields(check_postcode, [raw], "postcode", "postcode_district", "postcode_flag")
        assert rows == [(None, None, "postcode_invalid")]

    def test_nhs_pseudo_postcodes_are_placeholders(self) -> None:
        rows = fields(check_postcode, ["ZZ99 3VZ", "zz993wz"], "postcode", "postcode_flag")
        assert rows == [(None, "postcode_placeholder")] * 2

    def test_a_missing_postcode_is_null_without_a_flag(self) -> None:
        rows = fields(check_postcode, [None, "", "  "], "postcode", "postcode_flag")
        assert rows == [(None, None)] * 3


# --- identifiers ----------------------------------------------------------------------------------


def nhs(values: Sequence[str | None]) -> list[tuple]:
    return fields(check_nhs_number, values, "value", "flag")


class TestNhsNumber:
    def test_valid_numbers_are_kept(self) -> None:
        valid = ["9434765919", "4010232137", "1234567881", "4505577104", "4000000020"]
        assert nhs(valid) == [(v, None) for v in valid]

    def test_d4_spaces_and_hyphens_are_removed_before_validation(self) -> None:
        assert (
            nhs(["943 476 5919", "943-476-5919", " 9434765919 ", "９４３４７６５９１９"])
            == [("9434765919", None)] * 4
        )

    def test_d1_a_failed_check_digit_is_nulled_and_flagged(self) -> None:
        assert nhs(["9434765918", "4010232138"]) == [(None, "nhs_number_invalid")] * 2

    def test_a_check_digit_of_ten_can_never_be_valid(self) -> None:
        assert nhs([f"400000008{d}" for d in range(10)]) == [(None, "nhs_number_invalid")] * 10

    def test_d2_repdigits_pass_modulus_11_but_are_placeholders(self) -> None:
        repdigits = [str(d) * 10 for d in range(10)]
        assert all(nhs_check_digit(r[:9]) == int(r[9]) for r in repdigits)
        assert nhs(repdigits) == [(None, "nhs_number_placeholder")] * 10

    def test_d3_the_999_test_range_is_nulled_and_flagged(self) -> None:
        assert nhs_check_digit("999000002") == 6
        assert nhs(["9990000026", "999 000 0026"]) == [(None, "nhs_number_test_range")] * 2

    @pytest.mark.parametrize(
        "raw", ["943476591", "94347659190", "943476591X", "NHS", "9434765919a"]
    )
    def test_malformed_numbers_are_invalid(self, raw: str) -> None:
        assert nhs([raw]) == [(None, "nhs_number_invalid")]

    def test_flags_are_named_after_the_scheme(self) -> None:
        rows = fields(
            lambda e: check_identifier(e, scheme="nhs", validation="nhs_number"),
            ["9434765918", "0000000000"],
            "value",
            "flag",
        )
        assert rows == [(None, "nhs_invalid"), (None, "nhs_placeholder")]

    @PROPERTY
    @given(
        st.lists(st.text(alphabet="0123456789", min_size=9, max_size=9), min_size=1, max_size=50)
    )
    def test_numbers_with_a_computed_check_digit_are_kept(self, stems: list[str]) -> None:
        numbers = [s + str(nhs_check_digit(s)) for s in stems if nhs_check_digit(s) is not None]
        numbers = [n for n in numbers if not n.startswith("999") and len(set(n)) > 1]
        assume(numbers)
        assert nhs(numbers) == [(n, None) for n in numbers]

    @PROPERTY
    @given(
        st.text(alphabet="0123456789", min_size=9, max_size=9),
        st.integers(0, 9),
        st.integers(1, 9),
    )
    def test_a_single_digit_change_is_judged_like_the_oracle(
        self, stem: str, position: int, delta: int
    ) -> None:
        check = nhs_check_digit(stem)
        assume(check is not None)
        number = stem + str(check)
        changed = (
            number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1 :]
        )
        oracle_ok = nhs_check_digit(changed[:9]) == int(changed[9])
        placeholder = len(set(changed)) == 1
        test_range = changed.startswith("999")
        value, flag = nhs([changed])[0]
        if oracle_ok and not placeholder and not test_range:
            assert (value, flag) == (changed, None)
        else:
            assert value is None and flag is not None
        # modulus 11 with distinct weights catches every single-digit error
        assert not oracle_ok


class TestNiNumber:
    def test_valid_numbers_are_normalised(self) -> None:
        rows = fields(
            check_ni_number,
            ["AB654321C", "ab 65 43 21 c", "JG103759A", "ce 12 34 56 d"],
            "value",
            "flag",
        )
        assert rows == [
            ("AB654321C", None),
            ("AB654321C", None),
            ("JG103759A", None),
            ("CE123456D", None),
        ]

    @pytest.mark.parametrize(
        "raw",
        [
            "BG123456A",
            "GB123456A",
            "NK123456A",
            "KN123456A",
            "TN123456A",
            "NT123456A",
            "ZZ123456A",  # excluded prefixes
            "DA123456A",
            "FA123456A",
            "IA123456A",
            "UA123456A",
            "VA123456A",  # bad first letter
            "AO123456A",  # O is not allowed second
            "AB123456E",  # suffix must be A-D
            "AB123456",  # suffix required
            "AB12345C",
            "123456789",
            "A1234567C",
        ],
    )
    def test_invalid_numbers_are_nulled_and_flagged(self, raw: str) -> None:
        assert fields(check_ni_number, [raw], "value", "flag") == [(None, "ni_number_invalid")]

    @pytest.mark.parametrize("raw", ["QQ123456C", "qq 12 34 56 c", "AA000000A", "AB111111A"])
    def test_placeholder_numbers_are_nulled_and_flagged(self, raw: str) -> None:
        assert fields(check_ni_number, [raw], "value", "flag") == [(None, "ni_number_placeholder")]


class TestPlainIdentifier:
    def test_it_upper_cases_and_removes_all_spaces(self) -> None:
        rows = fields(
            lambda e: check_plain_identifier(e, scheme="pnc_id"),
            [" 2001/12 34a ", "x12", "", "  ", None, "N/A", "0000", "--"],
            "value",
            "flag",
        )
        assert rows == [
            ("2001/1234A", None),
            ("X12", None),
            (None, None),
            (None, None),
            (None, None),
            (None, "pnc_id_placeholder"),
            (None, "pnc_id_placeholder"),
            (None, "pnc_id_placeholder"),
        ]

    def test_leading_zeros_are_kept(self) -> None:
        assert fields(lambda e: check_plain_identifier(e, scheme="x"), ["00123"], "value") == [
            ("00123",)
        ]


# --- properties: idempotence and nulls --------------------------------------------------------

TEXT = st.lists(st.one_of(st.none(), st.text(max_size=30)), min_size=1, max_size=30)
NAMEISH = st.lists(
    st.one_of(
        st.none(),
        st.text(alphabet=st.sampled_from("abcXYZ éÉøØ’'-.,  \t0123ßǅŉΐﬁＡ\u200bОо"), max_size=20),
    ),
    min_size=1,
    max_size=30,
)

IDEMPOTENT = [std_text, std_name, std_given_name, std_family_name, std_address, std_postcode]


class TestProperties:
    @PROPERTY
    @given(st.one_of(TEXT, NAMEISH), st.sampled_from(IDEMPOTENT))
    def test_standardising_twice_changes_nothing(
        self, values: list[str | None], fn: Callable[[pl.Expr], pl.Expr]
    ) -> None:
        once = apply(fn, values)
        assert apply(fn, once) == once

    @PROPERTY
    @given(st.one_of(TEXT, NAMEISH), st.sampled_from(IDEMPOTENT))
    def test_nulls_and_blanks_stay_null(
        self, values: list[str | None], fn: Callable[[pl.Expr], pl.Expr]
    ) -> None:
        out = apply(fn, values)
        for value, result in zip(values, out, strict=True):
            if value is None or value.strip() == "":
                assert result is None
            assert result is None or (result != "" and result == result.strip())

    @PROPERTY
    @given(st.one_of(TEXT, NAMEISH))
    def test_names_hold_only_letters_and_single_spaces(self, values: list[str | None]) -> None:
        for result in apply(std_name, values):
            if result is None:
                continue
            assert result == " ".join(result.split(" ")) and "  " not in result
            for ch in result.replace(" ", ""):
                # "Cn": letters newer than Python 3.11's Unicode tables, which polars knows
                assert unicodedata.category(ch)[0] == "L" or unicodedata.category(ch) == "Cn"

    @PROPERTY
    @given(
        st.lists(
            st.one_of(
                st.none(),
                st.text(max_size=10),
                st.from_regex(r"[A-Za-z]{1,2}[0-9][A-Za-z0-9]? ?[0-9][A-Za-z]{2}", fullmatch=True),
            ),
            min_size=1,
            max_size=30,
        )
    )
    def test_output_postcodes_always_match_the_pattern(self, values: list[str | None]) -> None:
        for result in apply(std_postcode, values):
            assert result is None or re.fullmatch(FORMATTED_POSTCODE_RE, result)


# --- the canonical record -------------------------------------------------------------------------

DEMO_ROWS: dict[str, dict[str, list[str | None]]] = {
    "nhs_trust": {
        "patient_id": ["000123", "000124"],
        "forename": ["Zoë", "Baby"],
        "middle_names": ["Ann Marie", None],
        "surname": ["O’Brien-Smith", "Jones"],
        "date_of_birth": ["1985-03-14", "1900-01-01"],
        "gender": ["Female", "U"],
        "address_line_1": ["Flat 2, 10 High St.", "NFA"],
        "address_line_2": ["Leeds", ""],
        "postcode": ["ls62ab", "ZZ99 3VZ"],
        "nhs_number": ["943 476 5919", "0000000000"],
    },
    "social_care": {
        "case_ref": ["SC-1", "SC-2"],
        "first_name": ["Mr John Paul", "unknown"],
        "last_name": ["Smith", "SMITH"],
        "dob": ["14/03/1985", "31/02/1985"],
        "sex": ["M", "U"],
        "flat": [None, "NONE"],
        "house_number": ["10", "22"],
        "street": ["High St", "Acacia Ave"],
        "town": ["Leeds", "York"],
        "post_code": ["LS6 2AB", "YO1 7HH"],
        "nhs_no": ["9434765918", "9990000026"],
    },
    "police": {
        "person_urn": ["P1", "P2"],
        "forenames_surname": ["JOHN PAUL SMITH", "SMITH, Jane"],
        "birth_date": ["19850314", "20990101"],
        "sex_code": ["1", "2"],
        "address": ["10 High Street, Leeds", None],
        "postcode": ["LS6 2AB", "LS6"],
        "pnc_id": ["2001/0123456F", "N/A"],
        "ni_number": ["AB 65 43 21 C", "QQ123456C"],
    },
    "probation": {
        "crn": ["X1", "X2"],
        "first_name": ["Jean-Paul", "Twin 2"],
        "second_name": [None, "NMN"],
        "family_name": ["Dupont", "XXX"],
        "date_of_birth": ["03141985", "1231990"],
        "gender": ["Male", "Not stated"],
        "pnc_number": ["2001/0123456F", None],
        "ni_number": ["ab654321c", "GB123456A"],
    },
}

DEMO_EXPECTED: dict[str, list[dict]] = {
    "nhs_trust": [
        dict(
            record_key="nhs_trust:000123",
            given_name="ZOE",
            middle_names="ANN MARIE",
            family_name="OBRIENSMITH",
            date_of_birth=date(1985, 3, 14),
            dob_precision="day",
            sex="F",
            address="FLAT 2 10 HIGH ST LEEDS",
            postcode="LS6 2AB",
            postcode_district="LS6",
            birth_year=1985,
            quality_flags=[],
            id_nhs_number="9434765919",
            id_ni_number=None,
            id_pnc_id=None,
        ),
        dict(
            record_key="nhs_trust:000124",
            given_name=None,
            middle_names=None,
            family_name="JONES",
            date_of_birth=None,
            dob_precision=None,
            sex=None,
            address=None,
            postcode=None,
            postcode_district=None,
            birth_year=None,
            quality_flags=[
                "given_name_placeholder",
                "dob_placeholder",
                "sex_unmapped",
                "address_placeholder",
                "postcode_placeholder",
                "nhs_number_placeholder",
            ],
            id_nhs_number=None,
            id_ni_number=None,
            id_pnc_id=None,
        ),
    ],
    "social_care": [
        dict(
            record_key="social_care:SC-1",
            given_name="JOHN",
            middle_names="PAUL",
            family_name="SMITH",
            date_of_birth=date(1985, 3, 14),
            dob_precision="day",
            sex="M",
            address="10 HIGH ST LEEDS",
            postcode="LS6 2AB",
            postcode_district="LS6",
            birth_year=1985,
            quality_flags=["nhs_number_invalid"],
            id_nhs_number=None,
            id_ni_number=None,
            id_pnc_id=None,
        ),
        dict(
            record_key="social_care:SC-2",
            given_name=None,
            middle_names=None,
            family_name="SMITH",
            date_of_birth=None,
            dob_precision=None,
            sex=None,
            address="22 ACACIA AVE YORK",
            postcode="YO1 7HH",
            postcode_district="YO1",
            birth_year=None,
            quality_flags=["given_name_placeholder", "dob_unparseable", "nhs_number_test_range"],
            id_nhs_number=None,
            id_ni_number=None,
            id_pnc_id=None,
        ),
    ],
    "police": [
        dict(
            record_key="police:P1",
            given_name="JOHN",
            middle_names="PAUL",
            family_name="SMITH",
            date_of_birth=date(1985, 3, 14),
            dob_precision="day",
            sex="M",
            address="10 HIGH ST LEEDS",
            postcode="LS6 2AB",
            postcode_district="LS6",
            birth_year=1985,
            quality_flags=[],
            id_nhs_number=None,
            id_ni_number="AB654321C",
            id_pnc_id="2001/0123456F",
        ),
        dict(
            record_key="police:P2",
            given_name="JANE",
            middle_names=None,
            family_name="SMITH",
            date_of_birth=None,
            dob_precision=None,
            sex="F",
            address=None,
            postcode=None,
            postcode_district=None,
            birth_year=None,
            quality_flags=[
                "dob_out_of_range",
                "postcode_invalid",
                "ni_number_placeholder",
                "pnc_id_placeholder",
            ],
            id_nhs_number=None,
            id_ni_number=None,
            id_pnc_id=None,
        ),
    ],
    "probation": [
        dict(
            record_key="probation:X1",
            given_name="JEANPAUL",
            middle_names=None,
            family_name="DUPONT",
            date_of_birth=date(1985, 3, 14),
            dob_precision="day",
            sex="M",
            address=None,
            postcode=None,
            postcode_district=None,
            birth_year=1985,
            quality_flags=[],
            id_nhs_number=None,
            id_ni_number="AB654321C",
            id_pnc_id="2001/0123456F",
        ),
        dict(
            record_key="probation:X2",
            given_name=None,
            middle_names=None,
            family_name=None,
            date_of_birth=None,
            dob_precision=None,
            sex=None,
            address=None,
            postcode=None,
            postcode_district=None,
            birth_year=None,
            quality_flags=[
                "given_name_placeholder",
                "middle_names_placeholder",
                "family_name_placeholder",
                "dob_unparseable",
                "sex_unmapped",
                "ni_number_invalid",
            ],
            id_nhs_number=None,
            id_ni_number=None,
            id_pnc_id=None,
        ),
    ],
}

EXPECTED_TYPES: dict[str, pl.DataType] = {
    "VARCHAR": pl.String(),
    "DATE": pl.Date(),
    "INTEGER": pl.Int32(),
    "VARCHAR[]": pl.List(pl.String()),
}


def raw_frame(columns: MappingOf[str, Sequence[str | None]]) -> pl.LazyFrame:
    n = len(next(iter(columns.values())))
    data = {c: pl.Series(c, v, dtype=pl.String) for c, v in columns.items()}
    data["_line"] = pl.Series("_line", range(2, n + 2), dtype=pl.Int64)
    return pl.LazyFrame(data)


@pytest.fixture(scope="module")
def demo():
    return load_config()


class TestCanonical:
    @pytest.mark.parametrize("agency_name", list(DEMO_ROWS))
    def test_each_demo_mapping_gives_exactly_the_canonical_columns_and_types(
        self, demo, agency_name: str
    ) -> None:
        agency = demo.agency(agency_name)
        assert set(DEMO_ROWS[agency_name]) == set(agency.mapping.source_columns())
        out = to_canonical(raw_frame(DEMO_ROWS[agency_name]), agency, demo.identifiers, today=TODAY)
        expected_schema = pl.Schema(
            [(f.name, EXPECTED_TYPES[f.duckdb_type]) for f in CANONICAL_FIELDS]
            + [("id_nhs_number", pl.String), ("id_ni_number", pl.String), ("id_pnc_id", pl.String)]
        )
        assert out.collect_schema() == expected_schema
        collected = out.collect()
        assert collected.schema == expected_schema
        assert collected.schema == canonical_schema(demo.identifiers)
        assert "_line" not in collected.columns

    @pytest.mark.parametrize("agency_name", list(DEMO_ROWS))
    def test_each_demo_mapping_standardises_its_rows(self, demo, agency_name: str) -> None:
        agency = demo.agency(agency_name)
        out = to_canonical(raw_frame(DEMO_ROWS[agency_name]), agency, demo.identifiers, today=TODAY)
        rows = out.collect().to_dicts()
        for row, expected in zip(rows, DEMO_EXPECTED[agency_name], strict=True):
            assert row["agency"] == agency_name
            assert row["source_record_id"] == row["record_key"].split(":", 1)[1]
            assert {k: row[k] for k in expected} == expected

    def test_a_split_address_mdy_dates_and_numeric_sex_codes(self) -> None:
        agency = Agency.model_validate(
            {
                "name": "youth_service",
                "contract": "contract.yaml",
                "source": {"kind": "csv", "path": "extract.csv"},
                "mapping": {
                    "source_record_id": "ref",
                    "full_name": "name",
                    "date_of_birth": {"column": "born", "format": "%m%d%Y"},
                    "sex": {"column": "sx", "codes": {"1": "M", "2": "F"}},
                    "address": {"columns": ["house", "street", "town"], "separator": ", "},
                    "postcode": "pc",
                    "identifiers": {"nhs": "nhs"},
                },
            }
        )
        raw = raw_frame(
            {
                "ref": ["007", "008", "009"],
                "name": ["Ann Lee", "Bo Ng", "Cy Day"],
                "born": ["12011990", "02302021", "03141985"],
                "sx": ["1", "2", "3"],
                "house": ["4", None, "NFA"],
                "street": ["Elm Rd.", "Oak Lane", None],
                "town": ["Leeds", "", "York"],
                "pc": ["ls6 2ab", "LS6 2AB", "nope"],
                "nhs": ["4010232137", "4010232138", None],
            }
        )
        identifiers = {
            "nhs": IdentifierScheme.model_validate({"validation": "nhs_number"}),
            "aaa": IdentifierScheme.model_validate({}),
        }
        out = to_canonical(raw, agency, identifiers, today=TODAY).collect()
        assert out.columns[-2:] == ["id_aaa", "id_nhs"]
        assert out.select(
            "record_key",
            "given_name",
            "family_name",
            "date_of_birth",
            "birth_year",
            "sex",
            "address",
            "postcode",
            "quality_flags",
            "id_aaa",
            "id_nhs",
        ).rows() == [
            (
                "youth_service:007",
                "ANN",
                "LEE",
                date(1990, 12, 1),
                1990,
                "M",
                "4 ELM RD LEEDS",
                "LS6 2AB",
                [],
                None,
                "4010232137",
            ),
            (
                "youth_service:008",
                "BO",
                "NG",
                None,
                None,
                "F",
                "OAK LN",
                "LS6 2AB",
                ["dob_unparseable", "nhs_invalid"],
                None,
                None,
            ),
            (
                "youth_service:009",
                "CY",
                "DAY",
                date(1985, 3, 14),
                1985,
                None,
                None,
                None,
                ["sex_unmapped", "address_placeholder", "postcode_invalid"],
                None,
                None,
            ),
        ]

    def test_a_mapping_with_only_a_record_id_gives_null_fields_and_no_flags(self) -> None:
        agency = Agency.model_validate(
            {
                "name": "tiny",
                "contract": "c.yaml",
                "source": {"kind": "csv", "path": "x.csv"},
                "mapping": {"source_record_id": "id"},
            }
        )
        out = to_canonical(raw_frame({"id": ["1", " 2 "]}), agency, {}).collect()
        assert out.schema == canonical_schema({})
        assert out["record_key"].to_list() == ["tiny:1", "tiny:2"]
        assert out["quality_flags"].to_list() == [[], []]
        assert out["given_name"].to_list() == [None, None]

    def test_both_name_columns_and_a_full_name_the_columns_win(self) -> None:
        agency = Agency.model_validate(
            {
                "name": "both",
                "contract": "c.yaml",
                "source": {"kind": "csv", "path": "x.csv"},
                "mapping": {
                    "source_record_id": "id",
                    "given_name": "g",
                    "family_name": "f",
                    "full_name": "n",
                },
            }
        )
        raw = raw_frame(
            {
                "id": ["1", "2"],
                "g": ["Ann", "UNKNOWN"],
                "f": [None, "Lee"],
                "n": ["Ann X Lee", "Bo Lee"],
            }
        )
        out = to_canonical(raw, agency, {}).collect()
        assert out.select("given_name", "middle_names", "family_name", "quality_flags").rows() == [
            ("ANN", "X", "LEE", []),  # the full name fills the gaps
            ("BO", None, "LEE", ["given_name_placeholder"]),
        ]

    def test_a_column_missing_from_the_extract_is_reported_by_name(self, demo) -> None:
        agency = demo.agency("police")
        columns = {c: ["x"] for c in agency.mapping.source_columns() if c != "pnc_id"}
        with pytest.raises(SourceError, match="pnc_id"):
            to_canonical(raw_frame(columns), agency, demo.identifiers)

    def test_quality_flags_follow_the_documented_order(self) -> None:
        flags = DEMO_EXPECTED["probation"][1]["quality_flags"]
        field_flags = [f for f in flags if f in FIELD_FLAGS]
        assert field_flags == sorted(field_flags, key=FIELD_FLAGS.index)

    def test_standardise_extract_writes_parquet_and_returns_only_counts(
        self, demo, tmp_path: Path
    ) -> None:
        raw_path = tmp_path / "raw.parquet"
        raw_frame(DEMO_ROWS["nhs_trust"]).collect().write_parquet(raw_path)
        out_path = tmp_path / "std" / "nhs_trust.parquet"
        result = standardise_extract(
            raw_path, demo.agency("nhs_trust"), demo.identifiers, out_path, today=TODAY
        )
        assert result == StandardiseResult(
            path=out_path,
            rows=2,
            flags={
                "address_placeholder": 1,
                "dob_placeholder": 1,
                "given_name_placeholder": 1,
                "nhs_number_placeholder": 1,
                "postcode_placeholder": 1,
                "sex_unmapped": 1,
            },
        )
        written = pl.read_parquet(out_path)
        assert written.schema == canonical_schema(demo.identifiers)
        assert written["record_key"].to_list() == ["nhs_trust:000123", "nhs_trust:000124"]
        assert [p.name for p in out_path.parent.iterdir()] == ["nhs_trust.parquet"]


def test_other_postcode_format_is_normalised_not_validated() -> None:
    from linkage.standardise.postcodes import check_postcode

    df = pl.DataFrame({"p": [" 4223 ", "ab 12", "--", None]})
    out = df.select(check_postcode(pl.col("p"), "other").struct.field("postcode", "postcode_flag"))
    assert out.rows() == [("4223", None), ("AB12", None), (None, "postcode_invalid"), (None, None)]


def test_pnc_short_and_full_forms_standardise_to_one_value() -> None:
    from linkage.standardise.identifiers import PNC_CHECK_LETTERS, check_pnc

    letter = PNC_CHECK_LETTERS[(98 * 10**7 + 4567) % 23]
    wrong = PNC_CHECK_LETTERS[(98 * 10**7 + 4568) % 23]
    df = pl.DataFrame(
        {"p": [f"1998/0004567{letter}", f"98/4567{letter}", f"98/4567{wrong}", "1998/45"]}
    )
    out = df.select(
        check_pnc(pl.col("p"), scheme="pnc_id", pivot_year=2026).struct.field("value", "flag")
    )
    assert out.rows() == [
        (f"1998/0004567{letter}", None),
        (f"1998/0004567{letter}", None),
        (None, "pnc_id_invalid"),
        (None, "pnc_id_invalid"),
    ]
