"""Specifications of the demo-agency generator (linkage/demo/generate.py) and of the four agencies'
data contracts (data_contracts/*.yaml).

The generated population is small (5,000 persons) so the suite stays fast; every hard case below is
expected several times at that size with the fixed seeds used here, and rates are checked against
loose bounds around the profile's values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from linkage.contracts import load_contract
from linkage.demo.generate import (
    AGENCIES,
    COLUMNS,
    DEFAULT_PROFILE,
    FILE_NAMES,
    NHS_PLACEHOLDERS,
    PROFILES,
    RECORD_ID,
    DemoError,
    DemoResult,
    Profile,
    generate_demo,
    nhs_check_digit,
)
from linkage.errors import LinkageError

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO / "data_contracts"
NAMES = REPO / "linkage" / "demo" / "names"
PERSONS = 5_000
SEED = 20260101
POSTCODE_RE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}$")
TITLES = ("MR", "MRS", "MS", "MISS", "DR")


# --- fixtures and readers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    return generate_demo(tmp_path_factory.mktemp("default"), persons=PERSONS, seed=SEED)


@pytest.fixture(scope="module")
def alt(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    return generate_demo(tmp_path_factory.mktemp("alt"), persons=PERSONS, seed=SEED, profile="alt")


def read_extract(out_dir: Path, agency: str) -> pl.DataFrame:
    """An extract with every column as text, as the pipeline reads it."""
    path = out_dir / FILE_NAMES[agency]
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    return pl.read_csv(path, infer_schema=False, encoding="utf8")


def read_truth(result: DemoResult) -> pl.DataFrame:
    return pl.read_csv(result.truth_path, infer_schema=False)


def header(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        return list(pl.read_parquet_schema(path))
    with path.open(encoding="utf-8", newline="") as f:
        return f.readline().rstrip("\r\n").split(",")


def _strip_title(name: pl.Expr) -> pl.Expr:
    return name.str.replace(r"^(?:" + "|".join(TITLES) + r") ", "")


def records(result: DemoResult) -> pl.DataFrame:
    """Every record of every agency in one shape, joined to its truth row.

    Columns: agency, source_record_id, person_id, household_id, given, family (upper case, title
    removed), dob as (y, m, d) integers, postcode (upper case, one space).
    """
    truth = read_truth(result)
    parts = []
    for agency in AGENCIES:
        df = read_extract(result.out_dir, agency)
        rid = RECORD_ID[agency]
        if agency == "police":
            tokens = pl.col("forenames_surname").str.split(" ")
            df = df.with_columns(
                given=tokens.list.get(0, null_on_oob=True),
                family=tokens.list.last(),
            ).with_columns(
                # a title comes first: the given name is then the second token
                given=pl.when(pl.col("given").is_in(list(TITLES)))
                .then(tokens.list.get(1, null_on_oob=True))
                .otherwise(pl.col("given"))
            )
        given_col = {
            "nhs_trust": "forename",
            "social_care": "first_name",
            "police": "given",
            "probation": "first_name",
        }[agency]
        family_col = {
            "nhs_trust": "surname",
            "social_care": "last_name",
            "police": "family",
            "probation": "family_name",
        }[agency]
        dob_col, fmt = {
            "nhs_trust": ("date_of_birth", "%Y-%m-%d"),
            "social_care": ("dob", "%d/%m/%Y"),
            "police": ("birth_date", "%Y%m%d"),
            "probation": ("date_of_birth", "%m%d%Y"),
        }[agency]
        postcode = {"nhs_trust": "postcode", "social_care": "post_code", "police": "postcode"}
        dob = pl.col(dob_col).str.strptime(pl.Date, fmt, strict=False)
        pc = (
            pl.col(postcode[agency]).str.to_uppercase().str.replace_all(" ", "")
            if agency in postcode
            else pl.lit(None, dtype=pl.String)
        )
        parts.append(
            df.select(
                pl.lit(agency).alias("agency"),
                pl.col(rid).alias("source_record_id"),
                _strip_title(pl.col(given_col).str.to_uppercase()).alias("given"),
                pl.col(family_col).str.to_uppercase().alias("family"),
                dob.dt.year().alias("y"),
                dob.dt.month().alias("m"),
                dob.dt.day().alias("d"),
                pl.concat_str(pc.str.head(-3), pl.lit(" "), pc.str.tail(3)).alias("postcode"),
            )
        )
    return pl.concat(parts).join(truth, on=["agency", "source_record_id"], how="left")


@pytest.fixture(scope="module")
def recs(demo: DemoResult) -> pl.DataFrame:
    return records(demo)


def same_person_pairs(recs: pl.DataFrame, column: str) -> Iterator[tuple[str, str, str]]:
    """(person_id, value a, value b) for every two records of one person whose values differ."""
    grouped = (
        recs.filter(pl.col(column).is_not_null())
        .group_by("person_id")
        .agg(pl.col(column).unique().sort())
        .filter(pl.col(column).list.len() >= 2)
    )
    for person, values in grouped.iter_rows():
        for a, b in combinations(values, 2):
            yield person, a, b


def one_edit_apart(a: str, b: str) -> bool:
    """True when b is a with one letter inserted, deleted, substituted or two neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def share(mask: pl.Series) -> float:
    """Share of True values in a boolean Series (0 for an empty one)."""
    return int(mask.sum()) / len(mask) if len(mask) else 0.0


def nhs_valid(values: list[str]) -> np.ndarray:
    digits = np.asarray([int(v) for v in values], dtype=np.int64)
    return nhs_check_digit(digits // 10) == digits % 10


# --- determinism and layout -----------------------------------------------------------------------


def test_same_seed_and_size_give_byte_identical_files(tmp_path: Path) -> None:
    a = generate_demo(tmp_path / "a", persons=1_500, seed=3)
    b = generate_demo(tmp_path / "b", persons=1_500, seed=3)
    for name in [*FILE_NAMES.values(), "truth.csv"]:
        assert (a.out_dir / name).read_bytes() == (b.out_dir / name).read_bytes(), name
    assert a.rows == b.rows


def test_a_different_seed_gives_different_files(tmp_path: Path) -> None:
    a = generate_demo(tmp_path / "a", persons=1_500, seed=3)
    b = generate_demo(tmp_path / "b", persons=1_500, seed=4)
    for name in [*FILE_NAMES.values(), "truth.csv"]:
        assert (a.out_dir / name).read_bytes() != (b.out_dir / name).read_bytes(), name


def test_the_result_reports_paths_and_row_counts(demo: DemoResult) -> None:
    assert demo.persons == PERSONS
    assert list(demo.rows) == list(AGENCIES)
    for agency in AGENCIES:
        assert read_extract(demo.out_dir, agency).height == demo.rows[agency]
    assert demo.truth_path == demo.out_dir / "truth.csv"
    assert sorted(p.name for p in demo.out_dir.iterdir()) == sorted(
        [*FILE_NAMES.values(), "truth.csv"]
    ), "no temporary files are left behind"


@pytest.mark.parametrize("agency", AGENCIES)
def test_each_extract_has_exactly_the_specified_columns_in_order(
    demo: DemoResult, agency: str
) -> None:
    expected = {
        "nhs_trust": "patient_id,nhs_number,forename,middle_names,surname,date_of_birth,gender,"
        "address_line_1,address_line_2,postcode",
        "social_care": "case_ref,first_name,last_name,dob,sex,house_number,street,flat,town,"
        "post_code,nhs_no",
        "police": "person_urn,pnc_id,forenames_surname,birth_date,sex_code,address,postcode,"
        "ni_number",
        "probation": "crn,pnc_number,first_name,second_name,family_name,date_of_birth,gender,"
        "ni_number",
    }[agency].split(",")
    assert header(demo.out_dir / FILE_NAMES[agency]) == expected == list(COLUMNS[agency])


def test_truth_file_has_the_specified_columns(demo: DemoResult) -> None:
    assert header(demo.truth_path) == ["agency", "source_record_id", "person_id", "household_id"]


def test_police_parquet_holds_every_column_as_text(demo: DemoResult) -> None:
    schema = pl.read_parquet_schema(demo.out_dir / "police.parquet")
    assert set(schema.values()) == {pl.String}


def test_csv_files_are_utf8_without_bom_and_missing_values_are_empty(demo: DemoResult) -> None:
    for agency in ("nhs_trust", "social_care", "probation"):
        raw = (demo.out_dir / FILE_NAMES[agency]).read_bytes()
        assert not raw.startswith(b"\xef\xbb\xbf")
        raw.decode("utf-8")
        assert b'""' not in raw, "missing values are empty fields, not quoted empty strings"


def test_probation_has_no_address_or_postcode_column(demo: DemoResult) -> None:
    cols = header(demo.out_dir / "probation.csv")
    assert not [c for c in cols if "address" in c or "post" in c or c in ("street", "town")]


def test_identifiers_are_text_and_keep_their_leading_zeros(demo: DemoResult) -> None:
    nhs = read_extract(demo.out_dir, "nhs_trust")
    ids = nhs.get_column("patient_id")
    assert ids.str.len_chars().eq(8).all()
    assert ids.str.starts_with("0").sum() > 0
    numbers = nhs.get_column("nhs_number").drop_nulls().str.replace_all(" ", "")
    assert numbers.str.contains(r"^[0-9]{10}$").all()


# --- truth ----------------------------------------------------------------------------------------


def test_record_ids_are_unique_within_each_agency(demo: DemoResult) -> None:
    for agency in AGENCIES:
        ids = read_extract(demo.out_dir, agency).get_column(RECORD_ID[agency])
        assert ids.null_count() == 0
        assert ids.n_unique() == len(ids), agency


def test_every_record_has_exactly_one_truth_row_and_truth_has_no_other_rows(
    demo: DemoResult,
) -> None:
    truth = read_truth(demo)
    assert truth.null_count().row(0) == (0, 0, 0, 0)
    assert truth.select("agency", "source_record_id").is_unique().all()
    assert set(truth.get_column("agency").unique()) == set(AGENCIES)
    for agency in AGENCIES:
        ids = set(read_extract(demo.out_dir, agency).get_column(RECORD_ID[agency]))
        in_truth = set(truth.filter(pl.col("agency") == agency).get_column("source_record_id"))
        assert ids == in_truth, agency
    assert truth.height == sum(demo.rows.values())


def test_a_person_belongs_to_one_household(demo: DemoResult) -> None:
    truth = read_truth(demo)
    per_person = truth.group_by("person_id").agg(pl.col("household_id").n_unique())
    assert per_person.get_column("household_id").max() == 1
    assert truth.get_column("person_id").n_unique() <= PERSONS


# --- who is in which extract ----------------------------------------------------------------------


def test_agencies_cover_different_shares_of_the_population(demo: DemoResult) -> None:
    truth = read_truth(demo)
    share = {
        agency: truth.filter(pl.col("agency") == agency).get_column("person_id").n_unique()
        / PERSONS
        for agency in AGENCIES
    }
    assert share["nhs_trust"] == pytest.approx(0.70, abs=0.04)
    assert share["social_care"] == pytest.approx(0.15, abs=0.04)
    assert share["police"] == pytest.approx(0.10, abs=0.03)
    assert share["probation"] == pytest.approx(0.04, abs=0.02)


def test_many_persons_are_held_by_several_agencies(demo: DemoResult) -> None:
    truth = read_truth(demo)
    agencies_per_person = truth.group_by("person_id").agg(pl.col("agency").n_unique())
    counts = agencies_per_person.get_column("agency").value_counts().sort("agency")
    in_several = counts.filter(pl.col("agency") >= 2).get_column("count").sum()
    assert in_several > 0.1 * PERSONS
    assert counts.filter(pl.col("agency") >= 3).get_column("count").sum() > 0
    police = set(truth.filter(pl.col("agency") == "police").get_column("person_id"))
    probation = set(truth.filter(pl.col("agency") == "probation").get_column("person_id"))
    assert 0.5 < len(probation & police) / len(probation) < 0.95, "probation mostly known to police"


# --- the hard cases -------------------------------------------------------------------------------


def test_families_share_a_surname_and_an_address(demo: DemoResult) -> None:
    nhs = read_extract(demo.out_dir, "nhs_trust").join(
        read_truth(demo).filter(pl.col("agency") == "nhs_trust"),
        left_on="patient_id",
        right_on="source_record_id",
    )
    families = (
        nhs.filter(pl.col("address_line_1").is_not_null() & pl.col("surname").is_not_null())
        .group_by("household_id", pl.col("surname").str.to_uppercase(), "address_line_1")
        .agg(pl.col("person_id").n_unique().alias("people"), pl.col("forename").n_unique())
        .filter(pl.col("people") >= 2)
    )
    assert families.height > 0.05 * PERSONS
    # different people of one family have different first names
    assert share(families.get_column("forename") >= 2) > 0.95


def test_twins_share_household_surname_and_date_of_birth_but_not_first_name(
    recs: pl.DataFrame,
) -> None:
    named = ~pl.col("given").is_in(["BABY", "UNKNOWN"])  # unnamed newborn twins are both BABY
    twins = (
        recs.filter(pl.col("y").is_not_null() & (pl.col("y") > 1900) & named)
        .group_by("household_id", "y", "m", "d")
        .agg(pl.col("person_id").unique(), pl.col("given").unique())
        .filter(pl.col("person_id").list.len() == 2)
    )
    assert twins.height >= 3
    assert (twins.get_column("given").list.len() >= 2).all()


def test_the_same_person_appears_twice_in_one_agency_under_different_ids(demo: DemoResult) -> None:
    truth = read_truth(demo)
    for agency in ("nhs_trust", "social_care", "police"):
        rows = truth.filter(pl.col("agency") == agency)
        dup_persons = rows.group_by("person_id").len().filter(pl.col("len") >= 2).height
        rate = DEFAULT_PROFILE.agency(agency).duplicate_rate
        assert dup_persons >= 1, agency
        assert dup_persons / rows.height < 3 * rate + 0.01, agency


def test_duplicate_records_often_differ_in_more_than_their_id(demo: DemoResult) -> None:
    nhs = read_extract(demo.out_dir, "nhs_trust").join(
        read_truth(demo).filter(pl.col("agency") == "nhs_trust"),
        left_on="patient_id",
        right_on="source_record_id",
    )
    fields = [c for c in COLUMNS["nhs_trust"] if c != "patient_id"]
    dup_people = nhs.group_by("person_id").len().filter(pl.col("len") >= 2).get_column("person_id")
    dups = nhs.filter(pl.col("person_id").is_in(dup_people.implode()))
    variants = dups.group_by("person_id").agg(pl.struct(fields).n_unique().alias("versions"))
    assert (variants.get_column("versions") >= 2).sum() >= 0.3 * variants.height


def test_name_changes_show_as_different_family_names_for_one_person(recs: pl.DataFrame) -> None:
    changed = {
        person
        for person, a, b in same_person_pairs(recs, "family")
        if not one_edit_apart(a, b)
        and a.replace("'", "") != b.replace("'", "")
        and a not in b
        and b not in a  # not a double-barrelled name written in part
        and "UNKNOWN" not in (a, b)
    }
    assert len(changed) >= 10


def test_nicknames_and_full_names_both_occur_for_one_person(recs: pl.DataFrame) -> None:
    pairs = set()
    for line in (NAMES / "nicknames.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            formal, short = line.upper().split(",")
            pairs |= {(formal, short), (short, formal)}
    found = [1 for _, a, b in same_person_pairs(recs, "given") if (a, b) in pairs]
    assert len(found) >= 5
    assert len(pairs) // 2 >= 36, "a few dozen nickname pairs"


def test_typos_make_names_one_edit_apart(recs: pl.DataFrame) -> None:
    given = [1 for _, a, b in same_person_pairs(recs, "given") if one_edit_apart(a, b)]
    family = [1 for _, a, b in same_person_pairs(recs, "family") if one_edit_apart(a, b)]
    assert len(given) >= 3 and len(family) >= 3


def test_day_and_month_are_sometimes_transposed(recs: pl.DataFrame) -> None:
    dated = recs.filter(pl.col("y").is_not_null()).select("person_id", "y", "m", "d")
    pairs = dated.join(dated, on="person_id", suffix="_b").filter(
        (pl.col("y") == pl.col("y_b"))
        & (pl.col("m") == pl.col("d_b"))
        & (pl.col("d") == pl.col("m_b"))
        & (pl.col("m") != pl.col("d"))
    )
    assert pairs.get_column("person_id").n_unique() >= 1


def test_some_records_hold_an_older_address_with_another_postcode(recs: pl.DataFrame) -> None:
    moved = {p for p, a, b in same_person_pairs(recs, "postcode")}
    assert len(moved) >= 10


def test_nhs_numbers_are_mostly_valid_with_the_real_faults_planted(demo: DemoResult) -> None:
    numbers = read_extract(demo.out_dir, "nhs_trust").get_column("nhs_number")
    n = len(numbers)
    present = numbers.drop_nulls()
    compact = present.str.replace_all(" ", "")
    assert 0.01 < numbers.null_count() / n < 0.15, "some are missing"
    assert 0 < present.str.contains(r"^[0-9]{3} [0-9]{3} [0-9]{4}$").sum() < 0.3 * n, "spaced"
    placeholders = compact.is_in(list(NHS_PLACEHOLDERS))
    assert 0 < placeholders.sum() < 0.02 * n
    test_range = compact.str.starts_with("999")
    assert 0 < test_range.sum() < 0.01 * n
    valid = nhs_valid(compact.to_list())
    invalid = (~valid).sum()
    assert 0 < invalid < 0.03 * n, "a few fail the modulus-11 check"
    # apart from the planted faults, a number belongs to one person only
    truth = read_truth(demo).filter(pl.col("agency") == "nhs_trust")
    held = (
        read_extract(demo.out_dir, "nhs_trust")
        .join(truth, left_on="patient_id", right_on="source_record_id")
        .select("person_id", number=pl.col("nhs_number").str.replace_all(" ", ""))
        .drop_nulls()
        .filter(~pl.col("number").is_in(list(NHS_PLACEHOLDERS)))
        .filter(~pl.col("number").str.starts_with("999"))
    )
    shared = (
        held.group_by("number").agg(pl.col("person_id").n_unique()).filter(pl.col("person_id") > 1)
    )
    assert shared.height == 0
    # and the valid ones never fall in the 999 test range by accident
    assert not compact.filter(pl.Series(valid) & ~test_range).str.starts_with("999").any()


def test_social_care_holds_an_nhs_number_for_about_half(demo: DemoResult) -> None:
    nhs_no = read_extract(demo.out_dir, "social_care").get_column("nhs_no")
    assert share(nhs_no.is_not_null()) == pytest.approx(0.5, abs=0.1)


def test_placeholder_values_are_planted(demo: DemoResult, recs: pl.DataFrame) -> None:
    nhs = read_extract(demo.out_dir, "nhs_trust")
    assert recs.get_column("given").is_in(["UNKNOWN"]).sum() >= 1
    assert nhs.get_column("forename").str.to_uppercase().is_in(["BABY"]).sum() >= 1
    assert recs.filter((pl.col("y") == 1900) & (pl.col("m") == 1) & (pl.col("d") == 1)).height >= 3
    police = read_extract(demo.out_dir, "police")
    nfa = police.get_column("address").is_in(["NFA", "NO FIXED ABODE"])
    assert nfa.sum() >= 3
    assert police.filter(nfa).get_column("postcode").null_count() == nfa.sum()


def test_postcodes_are_well_formed_in_several_spellings(demo: DemoResult) -> None:
    pcs = pl.concat(
        [
            read_extract(demo.out_dir, "nhs_trust").get_column("postcode"),
            read_extract(demo.out_dir, "social_care").get_column("post_code"),
            read_extract(demo.out_dir, "police").get_column("postcode"),
        ]
    ).drop_nulls()
    compact = pcs.str.to_uppercase().str.replace_all(" ", "")
    formatted = compact.str.head(-3) + " " + compact.str.tail(3)
    assert all(POSTCODE_RE.match(p) for p in formatted)
    assert pcs.str.contains("[a-z]").sum() > 0
    assert (~pcs.str.contains(" ")).sum() > 0
    assert share(pcs.str.contains(r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}$")) > 0.8


def test_names_carry_accents_apostrophes_hyphens_and_titles(demo: DemoResult) -> None:
    nhs = read_extract(demo.out_dir, "nhs_trust")
    names = pl.concat([nhs.get_column("forename"), nhs.get_column("surname")]).drop_nulls()
    assert names.str.contains(r"[À-ÿĀ-ž]").sum() > 0, "accents (Zoë, Siân)"
    assert nhs.get_column("surname").str.contains("'").sum() > 0, "apostrophes (O'Brien)"
    assert nhs.get_column("surname").str.contains(r"^\S+-\S+$").sum() > 0, "Smith-Jones"
    titled = nhs.get_column("forename").str.contains(r"^(?i:mr|mrs|ms|miss|dr) ").sum()
    assert 0 < titled < 0.1 * nhs.height


def test_police_full_names_put_hyphens_never_spaces_inside_family_names(demo: DemoResult) -> None:
    full = read_extract(demo.out_dir, "police").get_column("forenames_surname").drop_nulls()
    tokens = full.str.split(" ")
    assert (tokens.list.len() >= 2).all()
    # given names contain no hyphen or apostrophe, so any there must be in the last token
    assert not full.str.contains(r"[-'][^ ]* ").any()
    assert tokens.list.last().str.contains("-").sum() > 0
    assert (full == full.str.to_uppercase()).all()
    assert not full.str.contains("  ").any()


def test_dates_follow_each_agencys_format(demo: DemoResult) -> None:
    checks = {
        ("nhs_trust", "date_of_birth"): r"^\d{4}-\d{2}-\d{2}$",
        ("social_care", "dob"): r"^\d{2}/\d{2}/\d{4}$",
        ("police", "birth_date"): r"^\d{8}$",
        ("probation", "date_of_birth"): r"^\d{8}$",
    }
    fmts = {
        "nhs_trust": "%Y-%m-%d",
        "social_care": "%d/%m/%Y",
        "police": "%Y%m%d",
        "probation": "%m%d%Y",
    }
    for (agency, col), pattern in checks.items():
        dates = read_extract(demo.out_dir, agency).get_column(col).drop_nulls()
        assert dates.str.contains(pattern).all(), agency
        parsed = dates.str.strptime(pl.Date, fmts[agency], strict=False)
        assert parsed.null_count() == 0, f"{agency}: every date is a real calendar date"
    # probation's month-first order is visible: some month fields exceed 12 when read day-first
    prob = read_extract(demo.out_dir, "probation").get_column("date_of_birth").drop_nulls()
    assert (prob.str.slice(2, 2).cast(pl.Int32) > 12).sum() > 0


def test_sex_codes_use_each_agencys_code_set(demo: DemoResult) -> None:
    code_sets = {
        ("nhs_trust", "gender"): {"Male", "Female", "Unknown"},
        ("social_care", "sex"): {"M", "F", "U"},
        ("police", "sex_code"): {"1", "2", "9"},
        ("probation", "gender"): {"Male", "Female", "Other"},
    }
    for (agency, col), allowed in code_sets.items():
        values = set(read_extract(demo.out_dir, agency).get_column(col).drop_nulls())
        assert values <= allowed, agency
        assert len(values) >= 2, agency


def test_name_lists_are_frequency_weighted() -> None:
    for name in ("first_names_male.txt", "first_names_female.txt", "surnames.txt"):
        rows = [
            line.split(",")
            for line in (NAMES / name).read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")
        ]
        weights = [int(w) for _, w in rows]
        assert len(rows) >= 200, name
        assert len({n for n, _ in rows}) == len(rows), name
        assert weights == sorted(weights, reverse=True)
        assert weights[0] > 10 * weights[-1], "common names are much more common"


# --- profiles -------------------------------------------------------------------------------------


def test_every_profile_generates_complete_extracts(
    demo: DemoResult, alt: DemoResult, tmp_path: Path
) -> None:
    assert set(PROFILES) == {"default", "dev", "alt"}
    dev = generate_demo(tmp_path, persons=2_000, seed=SEED, profile="dev")
    for result in (demo, alt, dev):
        truth = read_truth(result)
        assert truth.height == sum(result.rows.values())
        for agency in AGENCIES:
            assert header(result.out_dir / FILE_NAMES[agency]) == list(COLUMNS[agency])


def test_the_alt_profile_draws_a_different_population_and_noisier_agencies(
    demo: DemoResult, alt: DemoResult
) -> None:
    def twin_households(result: DemoResult) -> int:
        recs = records(result)
        return (
            recs.filter(pl.col("y").is_not_null() & (pl.col("y") > 1900))
            .group_by("household_id", "y", "m", "d")
            .agg(pl.col("person_id").n_unique())
            .filter(pl.col("person_id") >= 2)
            .height
        )

    def blank_share(result: DemoResult, agency: str, col: str) -> float:
        return share(read_extract(result.out_dir, agency).get_column(col).is_null())

    def coverage(result: DemoResult, agency: str) -> float:
        rows = read_truth(result).filter(pl.col("agency") == agency)
        return rows.get_column("person_id").n_unique() / PERSONS

    assert twin_households(alt) > 1.5 * twin_households(demo)
    assert blank_share(alt, "social_care", "town") > 2 * blank_share(demo, "social_care", "town")
    assert blank_share(alt, "social_care", "nhs_no") > blank_share(demo, "social_care", "nhs_no")
    assert coverage(alt, "nhs_trust") < coverage(demo, "nhs_trust") - 0.1
    assert coverage(alt, "social_care") > coverage(demo, "social_care") + 0.05
    alt_truth = read_truth(alt)
    assert (
        alt_truth.get_column("household_id").n_unique()
        < read_truth(demo).get_column("household_id").n_unique()
    ), "bigger households"


def test_a_custom_profile_can_be_passed(tmp_path: Path) -> None:
    quiet: Profile = replace(DEFAULT_PROFILE, name="quiet", typo_rate=0.0, nickname_rate=0.0)
    result = generate_demo(tmp_path, persons=300, seed=1, profile=quiet)
    assert result.rows["nhs_trust"] > 0


def test_a_rate_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(DemoError, match="typo_rate"):
        replace(DEFAULT_PROFILE, typo_rate=1.5)


# --- bad arguments and edge sizes -----------------------------------------------------------------


@pytest.mark.parametrize("persons", [0, -5])
def test_fewer_than_one_person_is_refused(tmp_path: Path, persons: int) -> None:
    with pytest.raises(DemoError, match="persons"):
        generate_demo(tmp_path, persons=persons, seed=1)


def test_a_negative_seed_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="seed"):
        generate_demo(tmp_path, persons=10, seed=-1)


def test_an_unknown_profile_is_refused_naming_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="default, dev, alt"):
        generate_demo(tmp_path, persons=10, seed=1, profile="tuned")
    assert issubclass(DemoError, LinkageError) and issubclass(DemoError, ValueError)


@pytest.mark.parametrize("persons", [1, 2, 7, 40])
def test_tiny_populations_still_give_consistent_files(tmp_path: Path, persons: int) -> None:
    result = generate_demo(tmp_path, persons=persons, seed=5)
    truth = read_truth(result)
    assert truth.height == sum(result.rows.values())
    for agency in AGENCIES:
        assert header(tmp_path / FILE_NAMES[agency]) == list(COLUMNS[agency])


def test_nhs_check_digit_matches_the_published_example() -> None:
    # 943 476 5919 is the NHS's own example of a valid number
    assert nhs_check_digit(np.array([943476591]))[0] == 9
    assert nhs_check_digit(np.array([999999999]))[0] == 9  # repdigits pass: hence the blocklist


# --- contracts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("agency", AGENCIES)
def test_each_contract_is_valid_odcs_and_lists_the_files_columns_in_order(
    demo: DemoResult, agency: str
) -> None:
    contract = load_contract(CONTRACTS / f"{agency}.yaml")
    assert contract.table == agency
    assert contract.column_names == header(demo.out_dir / FILE_NAMES[agency])
    rid = next(c for c in contract.columns if c.name == RECORD_ID[agency])
    assert rid.required and rid.unique
    assert {c.pii_class for c in contract.columns} <= {
        "direct_identifier",
        "quasi_identifier",
        "other",
    }
    assert {"lawfulBasis", "dataSharingAgreement", "retentionPeriod", "quarantineThreshold"} <= set(
        contract.custom
    )
    assert re.fullmatch(r"P\d+Y", contract.custom["retentionPeriod"])
    assert 0 < float(contract.custom["quarantineThreshold"]) < 0.05


@pytest.mark.parametrize("agency", AGENCIES)
def test_contracts_declare_every_column_fully(agency: str) -> None:
    doc = yaml.safe_load((CONTRACTS / f"{agency}.yaml").read_text(encoding="utf-8"))
    assert doc["apiVersion"] == "v3.1.0" and doc["kind"] == "DataContract"
    assert doc["status"] == "active" and doc["description"]["purpose"]
    for prop in doc["schema"][0]["properties"]:
        assert prop["logicalType"] == "string", prop["name"]
        assert prop["description"], prop["name"]
        assert "examples" not in prop, "no example values that look like personal data"
        pii = [c for c in prop["customProperties"] if c["property"] == "piiClass"]
        assert len(pii) == 1, prop["name"]
        is_id = prop["name"] == RECORD_ID[agency]
        assert bool(prop.get("primaryKey")) == is_id and bool(prop.get("unique")) == is_id


def _row_rules(prop: dict) -> Iterator[tuple[str, object]]:
    options = prop.get("logicalTypeOptions") or {}
    if "pattern" in options:
        yield "pattern", options["pattern"]
    if "maxLength" in options:
        yield "maxLength", options["maxLength"]
    for rule in prop.get("quality") or []:
        if rule.get("metric") == "invalidValues" and rule.get("mustBe") == 0:
            args = rule.get("arguments") or {}
            if "pattern" in args:
                yield "pattern", args["pattern"]
            if "validValues" in args:
                yield "validValues", set(args["validValues"])


@pytest.mark.parametrize("profile", ["default", "alt"])
@pytest.mark.parametrize("agency", AGENCIES)
def test_generated_rows_satisfy_their_contracts_row_rules(
    demo: DemoResult, alt: DemoResult, profile: str, agency: str
) -> None:
    """The planted faults are field-level (nulled and flagged later), never quarantine causes."""
    result = demo if profile == "default" else alt
    df = read_extract(result.out_dir, agency)
    doc = yaml.safe_load((CONTRACTS / f"{agency}.yaml").read_text(encoding="utf-8"))
    for prop in doc["schema"][0]["properties"]:
        values = df.get_column(prop["name"])
        if prop.get("required"):
            assert values.null_count() == 0, prop["name"]
        present = values.drop_nulls()
        for kind, rule in _row_rules(prop):
            if kind == "pattern":
                bad = [v for v in present if not re.search(str(rule), v)]
            elif kind == "maxLength":
                bad = [v for v in present if len(v) > int(str(rule))]
            else:
                assert isinstance(rule, set)
                bad = [v for v in present if v not in rule]
            assert not bad, f"{agency}.{prop['name']} breaks {kind}: {len(bad)} rows"
