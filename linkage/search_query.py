"""A search query: validated as typed, standardised like the records, and checked for specificity.

Every value goes through the pipeline's own standardisers (:mod:`linkage.standardise`), the ones
``to_canonical`` applies to an agency's extract, so ``Zoë O'Brien``, ``sw1a1aa`` and
``943 476 5919`` become ``ZOE`` / ``OBRIEN``, ``SW1A 1AA`` and ``9434765919`` exactly as they
are in the index. A polars query costs a few milliseconds whatever its size, so results are
cached by raw value (ASCII text case- and outer-space-insensitively), and the search index fills
the cache with its own names, dates of birth and postcodes in one vectorised query at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Annotated, Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from linkage.config import ProjectConfig
from linkage.errors import InvalidQueryError, SearchError
from linkage.standardise.codes import map_sex
from linkage.standardise.dates import parse_dob
from linkage.standardise.identifiers import check_identifier
from linkage.standardise.names import check_names_from_parts
from linkage.standardise.postcodes import check_postcode
from schemas.canonical import identifier_column

#: How a query's sex is written: a code or the word, any case.
SEX_CODES: dict[str, str | None] = {"M": "M", "F": "F", "X": "X", "MALE": "M", "FEMALE": "F"}
#: Dates of birth are asked for in ISO form.
DOB_FORMAT = "%Y-%m-%d"
#: The combinations of fields a search must hold at least one of (after standardisation).
ENOUGH: tuple[tuple[str, ...], ...] = (
    ("identifier",),
    ("family_name", "date_of_birth"),
    ("given_name", "family_name", "postcode"),
)

_PAIR = re.compile(r"^\s*([^=:\s]+)\s*[=:](.*)$", re.DOTALL)

Name = Annotated[str, Field(max_length=100)]
Short = Annotated[str, Field(max_length=40)]


class SearchQuery(BaseModel):
    """Query by example: any subset of these fields, as a case worker would type them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    given_name: Name | None = Field(None, examples=["Zoë"])
    family_name: Name | None = Field(None, examples=["O'Brien"])
    date_of_birth: Annotated[str, Field(max_length=10)] | None = Field(
        None, description="ISO date, YYYY-MM-DD.", examples=["1984-03-01"]
    )
    postcode: Short | None = Field(None, examples=["sw1a1aa"])
    sex: Short | None = Field(None, description="M, F or X (or male, female).", examples=["F"])
    identifiers: dict[Short, Short] = Field(
        default_factory=dict,
        max_length=10,
        description='Identifier scheme -> value, e.g. {"nhs_number": "943 476 5919"}.',
    )

    @field_validator("identifiers", mode="before")
    @classmethod
    def _pairs(cls, v: Any) -> Any:
        """Also accept a list of ``scheme=value`` (or ``scheme:value``) strings."""
        if not isinstance(v, list | tuple):
            return v
        out: dict[Any, Any] = {}
        for item in v:
            m = _PAIR.match(item) if isinstance(item, str) else None
            if m is None:
                raise ValueError("give each identifier as scheme=value, e.g. nhs_number=9434765919")
            out[m[1]] = m[2]
        return out

    @field_validator("*", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        texts = [*v.keys(), *v.values()] if isinstance(v, dict) else [v]
        for text in texts:
            if isinstance(text, str) and not _encodable(text):
                raise ValueError("must be valid Unicode text")
        if isinstance(v, dict):
            return {k: x for k, x in v.items() if x not in ("", None)}
        return None if v == "" else v

    def asked(self) -> dict[str, Any]:
        """The fields given, as typed (for the audit log only)."""
        return self.model_dump(exclude_defaults=True)

    @classmethod
    def parse(cls, **fields: Any) -> SearchQuery:
        """Validate ``fields``; a bad one raises :class:`InvalidQueryError` naming it."""
        try:
            return cls(**fields)
        except ValidationError as e:
            raise InvalidQueryError(validation_problems(e.errors())) from None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from JSON "\\ud800"
        return False
    return True


def validation_problems(errors: Iterable[Mapping[str, Any]]) -> list[str]:
    """Pydantic's errors as ``field: problem`` lines, never echoing the value."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "header"):
            loc = loc[1:]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        out.append(f"{'.'.join(loc) or 'query'}: {msg}")
    return out


@dataclass(frozen=True)
class StandardQuery:
    """A query standardised to canonical columns (``values``), ready to score."""

    values: dict[str, Any]
    identifiers: dict[str, str] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()

    def has(self, name: str) -> bool:
        if name == "identifier":
            return bool(self.identifiers)
        return self.values.get(name) is not None


#: Each standardiser's outputs used, by kind of field.
_OUTPUTS: dict[str, tuple[str, ...]] = {
    "given": ("given_name", "middle_names", "given_name_flag"),
    "family": ("family_name", "family_name_flag"),
    "dob": ("date_of_birth", "dob_flag"),
    "postcode": ("postcode", "postcode_district", "postcode_flag"),
    "sex": ("value", "flag"),
    "id": ("value", "flag"),
}
_CACHE: dict[tuple[str, str, str], tuple[Any, ...]] = {}
_CACHE_SIZE = 1_000_000


@lru_cache(maxsize=256)
def _expr(kind: str, arg: str) -> pl.Expr:
    """The pipeline's standardiser for a kind of field, built once, reading column
    ``kind:arg`` (``arg``: the date the DOB is checked against, the postcode format, or
    ``scheme|validation``)."""
    v = pl.col(f"{kind}:{arg}")
    if kind == "given":
        s = check_names_from_parts(v, None, None)
    elif kind == "family":
        s = check_names_from_parts(None, None, v)
    elif kind == "dob":
        s = parse_dob(v, DOB_FORMAT, today=date.fromisoformat(arg))
    elif kind == "postcode":
        s = check_postcode(v, arg)
    elif kind == "sex":
        s = map_sex(v, SEX_CODES)
    else:
        scheme, validation = arg.split("|")
        s = check_identifier(v, scheme=scheme, validation=validation)
    return pl.struct([s.struct.field(f) for f in _OUTPUTS[kind]]).alias(f"{kind}:{arg}")


def _key(raw: str) -> str:
    """The cache key of a raw value: ASCII text upper-cased and stripped of outer spaces, which
    every standardiser here does first anyway (tested), so ``smith`` and `` SMITH`` share one
    entry; other text as it is."""
    return raw.strip(" \t\r\n").upper() if raw.isascii() else raw


def _standardise(fields: list[tuple[str, str, str]]) -> list[tuple[Any, ...]]:
    """Standardise ``(kind, arg, raw value)`` fields: cached ones from the cache, the others in
    one polars query (a few milliseconds, mostly fixed costs, whatever the number of rows)."""
    keys = [(k, a, _key(raw)) for k, a, raw in fields]
    # read each entry once: another thread may clear the cache meanwhile
    found: dict[tuple[str, str, str], tuple[Any, ...]] = {}
    for f in keys:
        if (hit := _CACHE.get(f)) is not None:
            found[f] = hit
    missing = list(dict.fromkeys(f for f in keys if f not in found))
    if missing:
        frame = pl.DataFrame(
            {f"{k}:{a}": [raw] for k, a, raw in missing},
            schema={f"{k}:{a}": pl.String for k, a, _ in missing},
        )
        row = frame.select([_expr(k, a) for k, a, _ in missing]).row(0, named=True)
        if len(_CACHE) + len(missing) > _CACHE_SIZE:
            _CACHE.clear()
        for k, a, raw in missing:
            found[k, a, raw] = _CACHE[k, a, raw] = tuple(
                row[f"{k}:{a}"][out] for out in _OUTPUTS[k]
            )
    return [found[f] for f in keys]


def prewarm(kind: str, arg: str, values: list[str]) -> int:
    """Standardise many values of one kind in one vectorised query and cache them (the search
    index does this with its own names and dates of birth at start-up); return how many."""
    keys = list(dict.fromkeys(_key(v) for v in values if v))[: _CACHE_SIZE // 4]
    if not keys:
        return 0
    name = f"{kind}:{arg}"
    rows = pl.DataFrame({name: keys}, schema={name: pl.String}).select(_expr(kind, arg))
    if len(_CACHE) + len(keys) > _CACHE_SIZE:
        _CACHE.clear()
    for raw, out in zip(keys, rows.to_series().to_list(), strict=True):
        _CACHE[(kind, arg, raw)] = tuple(out[o] for o in _OUTPUTS[kind])
    return len(keys)


def prewarm_index(
    config: ProjectConfig,
    given: list[str],
    family: list[str],
    dobs: list[str],
    postcodes: list[str],
) -> None:
    """Cache the standardised forms of an index's own given names, family names, dates of birth
    (ISO text) and postcodes (with and without the space): what most searches ask for."""
    prewarm("given", "", given)
    prewarm("family", "", family)
    prewarm("dob", date.today().isoformat(), dobs)
    fmt = postcode_format(config)
    prewarm("postcode", fmt, [p for pc in postcodes for p in (pc, pc.replace(" ", ""))])


_DOB_PROBLEMS = {
    "dob_unparseable": "not a date: give it as YYYY-MM-DD (e.g. 1984-03-01)",
    "dob_placeholder": "a placeholder date that means 'unknown'; leave it out",
    "dob_out_of_range": "before 1890 or in the future",
}


def postcode_format(config: ProjectConfig) -> str:
    """``uk`` unless every agency that maps a postcode says it is not a UK one."""
    formats = {a.mapping.postcode_format for a in config.agencies if a.mapping.postcode}
    return "other" if formats == {"other"} else "uk"


def standardise_query(query: SearchQuery, config: ProjectConfig) -> StandardQuery:
    """Standardise ``query`` into the canonical record's columns.

    Raises:
        InvalidQueryError: a value is malformed (every problem listed, no value echoed).
    """
    problems: list[str] = []
    ignored: list[str] = []
    values: dict[str, Any] = {
        "given_name": None,
        "middle_names": None,
        "family_name": None,
        "date_of_birth": None,
        "sex": None,
        "address": None,
        "postcode": None,
        "postcode_district": None,
        **{identifier_column(s): None for s in sorted(config.identifiers)},
    }
    schemes = {
        scheme: f"{scheme}|{config.identifiers[scheme].validation}"
        for scheme in query.identifiers
        if scheme in config.identifiers
    }
    asked = [
        (kind, arg, raw)
        for kind, arg, raw in (
            ("given", "", query.given_name),
            ("family", "", query.family_name),
            ("dob", date.today().isoformat(), query.date_of_birth),
            ("postcode", postcode_format(config), query.postcode),
            ("sex", "", query.sex),
            *(("id", schemes[s], v) for s, v in query.identifiers.items() if s in schemes),
        )
        if raw is not None
    ]
    out = dict(zip(((k, a) for k, a, _ in asked), _standardise(asked), strict=True))
    if ("given", "") in out:
        values["given_name"], values["middle_names"], _ = out["given", ""]
        if values["given_name"] is None:
            ignored.append("given_name")
    if ("family", "") in out:
        values["family_name"], _ = out["family", ""]
        if values["family_name"] is None:
            ignored.append("family_name")
    for (kind, _arg), result in out.items():
        if kind == "dob":
            values["date_of_birth"], flag = result
            if flag:
                problems.append(f"date_of_birth: {_DOB_PROBLEMS.get(flag, flag)}")
        elif kind == "postcode":
            values["postcode"], values["postcode_district"], flag = result
            if flag:
                problems.append("postcode: not a valid postcode (e.g. SW1A 1AA)")
        elif kind == "sex":
            values["sex"], flag = result
            if flag:
                problems.append("sex: give M, F or X")
    identifiers = _identifiers(query.identifiers, config, problems, out)
    for scheme, value in identifiers.items():
        values[identifier_column(scheme)] = value
    if problems:
        raise InvalidQueryError(problems)
    return StandardQuery(values, identifiers, tuple(ignored))


def standardise_identifier(scheme: str, value: str, config: ProjectConfig) -> str:
    """One identifier standardised as the pipeline does; raises InvalidQueryError if bad."""
    problems: list[str] = []
    spec = config.identifiers.get(scheme)
    out = {}
    if spec is not None:
        arg = f"{scheme}|{spec.validation}"
        out = {("id", arg): _standardise([("id", arg, value)])[0]}
    ids = _identifiers({scheme: value}, config, problems, out)
    if problems:
        raise InvalidQueryError(problems)
    return ids[scheme]


def _identifiers(
    raw: Mapping[str, str],
    config: ProjectConfig,
    problems: list[str],
    standardised: Mapping[tuple[str, str], tuple[Any, ...]],
) -> dict[str, str]:
    out: dict[str, str] = {}
    for scheme in raw:
        spec = config.identifiers.get(scheme)
        if spec is None:
            known = ", ".join(sorted(config.identifiers)) or "none"
            problems.append(f"identifiers: unknown scheme (known: {known})")
            continue
        std, flag = standardised["id", f"{scheme}|{spec.validation}"]
        if std is None:
            why = (flag or "").removeprefix(f"{scheme}_").replace("_", " ") or "empty"
            problems.append(f"identifiers.{scheme}: not a usable {scheme} ({why})")
        else:
            out[scheme] = std
    return out


def check_specificity(query: StandardQuery, schemes: list[str]) -> None:
    """Refuse a query that could match too many people to be a fair search.

    Raises:
        SearchError: naming the fields held, what is missing and what would be enough.
    """
    if any(all(query.has(f) for f in rule) for rule in ENOUGH):
        return
    held = [f for f in ("given_name", "family_name", "date_of_birth", "postcode", "sex")
            if query.has(f)]  # fmt: skip
    closest = min(
        ([f for f in rule if not query.has(f)] for rule in ENOUGH[1:]), key=lambda m: len(m)
    )
    ignored = (
        f" ({', '.join(query.ignored)} ignored: a placeholder such as UNKNOWN)"
        if query.ignored
        else ""
    )
    raise SearchError(
        f"query not specific enough: it holds {', '.join(held) or 'no usable field'}{ignored}. "
        f"Give any identifier ({', '.join(schemes)}), or family_name + date_of_birth, or "
        f"given_name + family_name + postcode (missing here: {' + '.join(closest)})"
    )
