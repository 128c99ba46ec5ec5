"""Typed project configuration, built once at the edge (CLI, flow) and passed down.

A project config is one YAML file. Relative paths in it are resolved against the directory of the
file, so a project folder can be moved as a whole. Every problem is reported together, each with the
key path, the line in the file, what is wrong and how to fix it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from linkage.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO_ROOT / "examples" / "demo" / "linkage.yaml"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sources --------------------------------------------------------------------------------------


class CsvSource(_Model):
    """A CSV file, or the newest matching file in a dated drop folder."""

    kind: Literal["csv"]
    path: Path = Field(description="A file, or a folder of dated drops (see `pattern`).")
    pattern: str = Field(
        "*.csv", description="Glob for files in a drop folder; the last in name order is used."
    )
    delimiter: str = ","
    encoding: Literal["utf-8", "cp1252", "latin-1"] = "utf-8"
    quote: str = '"'
    skip_initial_space: bool = Field(
        False, description="Ignore spaces after each delimiter (files written as `a, b, c`)."
    )

    @field_validator("delimiter", "quote")
    @classmethod
    def _one_char(cls, v: str) -> str:
        if len(v) != 1:
            raise ValueError(f"must be a single character, got {v!r}")
        return v


class ParquetSource(_Model):
    """A Parquet file, or the newest matching file in a dated drop folder."""

    kind: Literal["parquet"]
    path: Path
    pattern: str = "*.parquet"


class DatabaseSource(_Model):
    """A SQL database table or query, read inside one read-only snapshot.

    The connection string comes from an environment variable so that no secret sits in the file.
    """

    kind: Literal["database"]
    dsn_env: str = Field(description="Environment variable holding the libpq connection string.")
    table: str | None = None
    query: str | None = None
    fetch_size: int = Field(50_000, gt=0)

    @model_validator(mode="after")
    def _table_or_query(self) -> DatabaseSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        return self


Source = Annotated[CsvSource | ParquetSource | DatabaseSource, Field(discriminator="kind")]


# --- mapping to the canonical record --------------------------------------------------------------


class DateMapping(_Model):
    column: str
    format: str = Field("%Y-%m-%d", description="strftime format, e.g. %d/%m/%Y, %Y%m%d, %m%d%Y.")


class CodeMapping(_Model):
    column: str
    codes: dict[str, Literal["M", "F", "X"] | None] = Field(
        description="Source value -> canonical sex code (M, F, X) or null for unknown."
    )


class CombineMapping(_Model):
    columns: list[str] = Field(min_length=1)
    separator: str = " "


class Mapping(_Model):
    """How one agency's columns become the canonical person record (schemas/canonical.py).

    Every canonical field except `source_record_id` is optional: a source that lacks a field leaves
    it out, and the model treats it as unknown, never as disagreement.
    """

    source_record_id: str
    given_name: str | None = None
    middle_names: str | None = None
    family_name: str | None = None
    full_name: str | None = Field(
        None, description="A single 'GIVEN MIDDLE FAMILY' column, split on spaces (last = family)."
    )
    date_of_birth: DateMapping | None = None
    sex: CodeMapping | None = None
    address: CombineMapping | None = None
    postcode: str | None = None
    postcode_format: Literal["uk", "other"] = Field(
        "uk", description="`uk` validates and formats UK postcodes; `other` only normalises text."
    )
    identifiers: dict[str, str] = Field(
        default_factory=dict, description="Identifier scheme -> source column."
    )

    @field_validator("address", mode="before")
    @classmethod
    def _address_shorthand(cls, v: Any) -> Any:
        return {"columns": [v]} if isinstance(v, str) else v

    def source_columns(self) -> list[str]:
        """Every source column the mapping reads, in a stable order."""
        cols = [self.source_record_id]
        for name in ("given_name", "middle_names", "family_name", "full_name", "postcode"):
            if (v := getattr(self, name)) is not None:
                cols.append(v)
        if self.date_of_birth:
            cols.append(self.date_of_birth.column)
        if self.sex:
            cols.append(self.sex.column)
        if self.address:
            cols.extend(self.address.columns)
        cols.extend(self.identifiers.values())
        return list(dict.fromkeys(cols))


class Agency(_Model):
    name: str
    contract: Path
    source: Source
    mapping: Mapping
    required: bool = Field(
        True, description="A run without this agency's extract does not publish."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r} must be lower case letters, digits and _ (e.g. nhs_trust)")
        return v


# --- identifiers, model, paths --------------------------------------------------------------------


class IdentifierScheme(_Model):
    validation: Literal["none", "nhs_number", "ni_number", "pnc"] = "none"
    compare: bool = Field(
        True, description="Use in the model. Set false for numbers only one agency holds."
    )
    trusted: bool | None = Field(
        None,
        description="A shared number links two records outright (unless their dates of birth "
        "conflict) and two different numbers keep them apart. Default: true for schemes with a "
        "check digit (nhs_number, pnc), false otherwise.",
    )

    @property
    def is_trusted(self) -> bool:
        return (
            self.trusted if self.trusted is not None else self.validation in ("nhs_number", "pnc")
        )


class ModelConfig(_Model):
    dir: Path = Field(description="Folder of versioned model artefacts (one subfolder each).")
    version: str | None = Field(None, description="Pin a version; default is the newest.")
    cluster_threshold: float = Field(
        0.7, gt=0, lt=1, description="Pairs at or above it link (grade probable or certain)."
    )
    certain_threshold: float = Field(
        0.99999,
        gt=0,
        lt=1,
        description="Links at or above it (or on a trusted number) are certain.",
    )
    predict_threshold: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="Pairs below it are not kept; kept unlinked pairs are possible.",
    )
    max_cluster_size: int = Field(
        25,
        ge=2,
        description="No person holds more records; bigger clusters are split and reported.",
    )
    incremental: bool = Field(
        True,
        description="Score only new and changed records when the previous release was linked "
        "with the same model and rules (a full run otherwise, or with `linkage run --full`).",
    )
    household_guards: bool = Field(
        True,
        description="Veto links between records whose given names or birth dates conflict "
        "(family members share surname, address and, for twins, birth date). Turn off only for "
        "sources known to hold no families, such as the FEBRL benchmarks.",
    )
    max_pairs_u: float = Field(5e6, gt=0, description="Pairs sampled to estimate u.")
    max_pairs_em: float = Field(
        2e7,
        gt=0,
        description="An EM training session whose blocking rule compares more pairs is trained "
        "on a sample of about this many (the name session grows with the square of a name's "
        "frequency: 9.6M pairs at 1M demo records).",
    )
    max_pairs_per_rule: float = Field(
        5e7,
        gt=0,
        description="A blocking rule generating more pairs stops the run (checked first; in an "
        "incremental run, on the changed records and those sharing a blocking key with one).",
    )
    common_name_records: int = Field(
        50,
        ge=1,
        description="At training, a full name held by more records is listed as common: two "
        "records sharing only a common name are not compared (they still are when they share a "
        "birth date, postcode, address or identifier).",
    )
    seed: int = 42

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> ModelConfig:
        if not self.predict_threshold <= self.cluster_threshold <= self.certain_threshold:
            raise ValueError(
                f"thresholds must satisfy predict_threshold ({self.predict_threshold}) <= "
                f"cluster_threshold ({self.cluster_threshold}) <= certain_threshold "
                f"({self.certain_threshold}); fix the model section"
            )
        return self


class DuckDBConfig(_Model):
    memory_limit: str = "4GB"
    temp_directory: Path
    threads: int = Field(2, gt=0)


class Paths(_Model):
    index_dir: Path = Field(description="Published releases and the `current.duckdb` pointer.")
    work_dir: Path = Field(
        description="Per-run working files (extracts, standardised records); removed after a run."
    )
    reports_dir: Path
    quarantine_dir: Path = Field(
        description="Restricted store (0700) of quarantined rows, kept for the agency to correct."
    )


class Schedule(_Model):
    cron: str = Field("0 2 * * *", description="When the nightly run starts (cron, 5 fields).")
    timezone: str = "Europe/London"

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError(f"{v!r} is not a 5-field cron expression (e.g. '0 2 * * *')")
        return v


class Gates(_Model):
    """Volume gate: an extract far smaller or larger than usual blocks publishing (C4, C5)."""

    volume_window: int = Field(7, gt=0, description="Published runs the median is taken over.")
    volume_min_history: int = Field(3, ge=1, description="Runs needed before volume is judged.")
    volume_min_ratio: float = Field(0.5, gt=0)
    volume_max_ratio: float = Field(2.0, gt=1)


class Reports(_Model):
    suppress_below: int = Field(
        10,
        ge=0,
        description="Counts from 1 to this minus 1 show as '<N' in reports (0: no suppression).",
    )


class AnalystRelease(_Model):
    key_file: Path = Field(
        description="Secret key for the pseudonyms (hex, owner-only file, outside the repository)."
    )
    create_key_if_missing: bool = Field(
        False, description="Create a random key on first use (demos only: back real keys up)."
    )
    attributes: tuple[Literal["birth_year", "sex", "postcode_district"], ...] = Field(
        ("birth_year", "sex", "postcode_district"),
        description="Person attributes analysts may see (from the identifiable persons table).",
    )


class Releases(_Model):
    keep: int = Field(
        7, ge=1, description="Published releases kept (the newest; the current one always)."
    )


class Search(_Model):
    """The search service (`linkage search`, `linkage serve`)."""

    result_cap: int = Field(10, ge=1, le=1000, description="Most persons one search returns.")


class ProjectConfig(_Model):
    project: str
    config_path: Path = Field(exclude=True)
    paths: Paths
    duckdb: DuckDBConfig
    model: ModelConfig
    schedule: Schedule = Field(default_factory=lambda: Schedule())
    gates: Gates = Field(default_factory=lambda: Gates())
    reports: Reports = Field(default_factory=lambda: Reports())
    releases: Releases = Field(default_factory=lambda: Releases())
    analyst_release: AnalystRelease | None = Field(
        None, description="Also publish a pseudonymised release for analysts."
    )
    search: Search = Field(default_factory=lambda: Search())
    identifiers: dict[str, IdentifierScheme] = Field(default_factory=dict)
    agencies: list[Agency] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_checks(self) -> ProjectConfig:
        names = [a.name for a in self.agencies]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"agency names must be unique; repeated: {dupes}")
        for a in self.agencies:
            unknown = sorted(set(a.mapping.identifiers) - set(self.identifiers))
            if unknown:
                raise ValueError(
                    f"agency {a.name!r} maps identifier scheme(s) {unknown} that are not declared "
                    f"under `identifiers:`; declare them there (known: {sorted(self.identifiers)})"
                )
        return self

    def agency(self, name: str) -> Agency:
        for a in self.agencies:
            if a.name == name:
                return a
        raise KeyError(name)


# --- loading --------------------------------------------------------------------------------------

_PATH_KEYS = {
    "path", "contract", "dir", "temp_directory", "index_dir", "work_dir", "reports_dir",
    "quarantine_dir", "key_file",
}  # fmt: skip


def _resolve_paths(node: Any, base: Path) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                str((base / v).resolve())
                if k in _PATH_KEYS and isinstance(v, str)
                else _resolve_paths(v, base)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_resolve_paths(v, base) for v in node]
    return node


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the YAML node at key path ``loc``, or of its nearest existing parent."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def load_config(path: Path | str | None = None) -> ProjectConfig:
    """Read and validate a project config; ``None`` means the built-in demo agencies.

    Raises:
        ConfigError: with every problem found, each naming the key, the line and the fix.
    """
    path = Path(path) if path is not None else DEMO_CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(path), [f"cannot read the file: {e.strerror}"]) from e
    try:
        raw = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        raise ConfigError(str(path), [f"not valid YAML: {e}"]) from e
    if not isinstance(raw, dict):
        raise ConfigError(
            str(path), ["the file must be a YAML mapping with keys project, agencies, ..."]
        )
    base = path.resolve().parent
    data = _resolve_paths(raw, base)
    data["config_path"] = str(path.resolve())
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(
                p
                for p in err["loc"]
                if not (isinstance(p, str) and p in {"csv", "parquet", "database"})
            )
            key = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(root, loc)
            where = f"line {line}, " if line else ""
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing":
                msg = "required key is missing; add it"
            elif err["type"] == "extra_forbidden":
                msg = "unknown key; remove it or check its spelling"
            problems.append(f"{where}`{key}`: {msg}")
        raise ConfigError(str(path), problems) from None
