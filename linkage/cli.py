"""The `linkage` command's library commands. Orchestration commands (run, train, schedule) are
added by ``flows.cli`` (the console entry point), so that this package never imports Prefect.

Library errors become a message on stderr and an exit code here, in one place (``main``).
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from linkage.config import ProjectConfig, load_config
from linkage.errors import LinkageError

app = typer.Typer(
    help="Link person records across agencies into a master person index.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The built-in demo's size: big enough to show real linkage problems, small enough for `make run`
# to finish in a few minutes on a 2-core machine. Larger sizes are a flag away (--persons).
DEMO_PERSONS = 50_000
DEMO_SEED = 1

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Project config (YAML). Default: the built-in demo agencies."
    ),
]


def config_from(path: Path | None) -> ProjectConfig:
    return load_config(path)


@app.command("demo-data")
def demo_data(
    persons: Annotated[int, typer.Option(help="Number of synthetic persons.")] = DEMO_PERSONS,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = DEMO_SEED,
    profile: Annotated[
        str, typer.Option(help="Generator configuration: default, dev or alt.")
    ] = "default",
    out: Annotated[
        Path | None, typer.Option(help="Output folder. Default: the demo's data folder.")
    ] = None,
) -> None:
    """Write the four demo agencies' synthetic extracts and their ground truth."""
    from linkage.demo.generate import generate_demo

    target = out or default_demo_dir()
    result = generate_demo(target, persons=persons, seed=seed, profile=profile)
    typer.echo(f"wrote {sum(result.rows.values())} records of {result.persons} persons to {target}")
    for agency, n in result.rows.items():
        typer.echo(f"  {agency:<14}{n:>9}")
    typer.echo(f"ground truth: {result.truth_path}")


def default_demo_dir() -> Path:
    """Where the demo config expects its extracts (the folder of its first agency's source)."""
    from linkage.config import DEMO_CONFIG

    cfg = load_config(DEMO_CONFIG)
    return Path(cfg.agencies[0].source.path).parent  # type: ignore[union-attr]


def _print_rows(columns: list[str], rows: list[tuple[Any, ...]], fmt: str) -> None:
    if fmt == "json":
        typer.echo(
            json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str, indent=2)
        )
    elif fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)
    else:
        cells = [[("" if v is None else str(v)) for v in r] for r in rows]
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        typer.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        typer.echo("  ".join("-" * w for w in widths))
        for r in cells:
            typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
        typer.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A SELECT statement.")],
    config: ConfigOpt = None,
    format: Annotated[
        Literal["table", "csv", "json"], typer.Option("--format", "-f", help="Output format.")
    ] = "table",
    limit: Annotated[int | None, typer.Option(help="Print at most this many rows.")] = None,
) -> None:
    """Run a read-only SQL query on the current published index."""
    from linkage.query import run_query

    cfg = config_from(config)
    columns, rows = run_query(cfg.paths.index_dir, query, limit=limit)
    _print_rows(columns, rows, format)


@app.command()
def evaluate(
    truth: Annotated[
        Path, typer.Option(help="CSV: agency, source_record_id, person_id[, household_id].")
    ],
    config: ConfigOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Measure the published clusters against ground truth (pairwise and B-cubed)."""
    from linkage.errors import QueryError
    from linkage.evaluate import evaluate as run_evaluation
    from linkage.publish import current_release

    cfg = config_from(config)
    release = current_release(cfg.paths.index_dir)
    if release is None:
        raise QueryError(f"no published index in {cfg.paths.index_dir}; run `linkage run` first")
    ev = run_evaluation(release, truth)
    if json_:
        typer.echo(json.dumps(ev.as_dict(), indent=2))
        return
    for k, v in ev.as_dict().items():
        if k != "agency_pairs":
            typer.echo(f"{k:<32}{v:.4f}" if isinstance(v, float) else f"{k:<32}{v}")
    typer.echo(f"\n{'agency pair':<32}{'true':>8}{'predicted':>10}{'correct':>9}{'P':>8}{'R':>8}")
    for p in ev.agency_pairs:
        typer.echo(
            f"{p.agencies:<32}{p.true_pairs:>8}{p.predicted_pairs:>10}{p.true_positive_pairs:>9}"
            f"{p.precision:>8.4f}{p.recall:>8.4f}"
        )


@app.command()
def keygen(
    out: Annotated[Path, typer.Option(help="Where to write the key (must not exist yet).")],
) -> None:
    """Create a random pseudonymisation key (owner-only file) for `analyst_release.key_file`."""
    from linkage.analyst import create_key

    try:
        create_key(out)
    except FileExistsError:
        raise LinkageError(f"{out} already exists; a key is never overwritten") from None
    typer.echo(f"wrote a new key to {out}: keep it secret, backed up, and out of the repository")


@app.command()
def rollback(
    config: ConfigOpt = None,
    to: Annotated[
        str | None, typer.Option(help="Run id of the release to go back to (default: previous).")
    ] = None,
) -> None:
    """Point the current index back at the previous release (or at --to RUN_ID)."""
    import getpass
    from datetime import UTC, datetime

    from linkage.lock import run_lock
    from linkage.publish import rollback as switch_back

    cfg = config_from(config)
    with run_lock(cfg.paths.index_dir):
        old, new = switch_back(cfg.paths.index_dir, to)
    audit = cfg.paths.index_dir / "audit"
    audit.mkdir(mode=0o700, exist_ok=True)
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "user": getpass.getuser(),
        "action": "rollback",
        "from": old.stem,
        "to": new.stem,
    }
    with open(audit / "releases.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    typer.echo(f"current release is now {new.stem} (was {old.stem})")


@app.command("check-config")
def check_config(config: ConfigOpt = None) -> None:
    """Validate the project config and every agency's data contract."""
    from linkage.contracts import load_contract

    cfg = config_from(config)
    for a in cfg.agencies:
        contract = load_contract(a.contract)
        missing = [c for c in a.mapping.source_columns() if c not in contract.column_names]
        if missing:
            raise LinkageError(
                f"{cfg.config_path}: agency {a.name!r} maps column(s) {missing} that its contract "
                f"{a.contract} does not declare; add them to the contract or fix the mapping"
            )
    typer.echo(f"{cfg.config_path}: OK ({len(cfg.agencies)} agencies)")


UserOpt = Annotated[
    str | None, typer.Option(help="Who is searching, for the audit log. Default: the OS user.")
]
FormatOpt = Annotated[Literal["table", "json"], typer.Option("--format", "-f", help="Output.")]


def _searcher(config: Path | None) -> Any:
    from linkage.search import Searcher

    return Searcher(config_from(config))


def _os_user() -> str:
    import getpass

    return getpass.getuser()


@app.command()
def search(
    config: ConfigOpt = None,
    given_name: Annotated[str | None, typer.Option("--given-name")] = None,
    family_name: Annotated[str | None, typer.Option("--family-name")] = None,
    dob: Annotated[str | None, typer.Option("--dob", help="Date of birth, YYYY-MM-DD.")] = None,
    postcode: Annotated[str | None, typer.Option()] = None,
    sex: Annotated[str | None, typer.Option(help="M, F or X.")] = None,
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="An identifier as scheme=value (repeatable).")
    ] = None,
    user: UserOpt = None,
    format: FormatOpt = "table",
) -> None:
    """Search the current index by example; every search is written to the audit log."""
    fields = {
        "given_name": given_name, "family_name": family_name, "date_of_birth": dob,
        "postcode": postcode, "sex": sex, "identifiers": ids or [],
    }  # fmt: skip
    result = _searcher(config).search(fields, user=user or _os_user())
    if format == "json":
        typer.echo(result.model_dump_json(indent=2))
        return
    columns = ["person_id", "probability", "weight", "grade", "given_name", "family_name",
               "date_of_birth", "postcode", "agencies"]  # fmt: skip
    rows = [
        (m.person.person_id, f"{m.match_probability:.6f}", f"{m.match_weight:.1f}", m.grade,
         m.person.given_name, m.person.family_name, m.person.date_of_birth, m.person.postcode,
         ",".join(m.person.agencies))
        for m in result.matches
    ]  # fmt: skip
    _print_rows(columns, rows, "table")
    for m in result.matches:
        typer.echo(f"\n{m.person.person_id} ({m.grade}): why")
        for w in m.why:
            typer.echo(f"  {w.comparison:<16}{w.match_weight:+8.2f}  {w.level}")


@app.command()
def lookup(
    config: ConfigOpt = None,
    agency: Annotated[str | None, typer.Option(help="An agency's name...")] = None,
    record_id: Annotated[str | None, typer.Option(help="...and its record id.")] = None,
    scheme: Annotated[str | None, typer.Option(help="Or an identifier scheme...")] = None,
    value: Annotated[str | None, typer.Option(help="...and the identifier.")] = None,
    user: UserOpt = None,
    format: FormatOpt = "table",
) -> None:
    """Every agency's records and identifiers for the person holding one record or identifier."""
    result = _searcher(config).lookup(
        user=user or _os_user(), agency=agency, source_record_id=record_id, scheme=scheme,
        value=value,
    )  # fmt: skip
    if format == "json":
        typer.echo(result.model_dump_json(indent=2))
        return
    columns = ["person_id", "agency", "source_record_id", "identifiers"]
    rows = [
        (p.person.person_id, r.agency, r.source_record_id,
         " ".join(f"{k}={v}" for k, v in r.identifiers.items()))
        for p in result.persons
        for r in p.records
    ]  # fmt: skip
    _print_rows(columns, rows, "table")


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Serve the search API and page (uvicorn, one worker; no access log: URLs hold queries)."""
    import uvicorn

    from linkage.api import create_app

    app_ = create_app(config_from(config))
    typer.echo(f"search service on http://{host}:{port}/ (API reference at /docs)")
    uvicorn.run(app_, host=host, port=port, workers=1, access_log=False, log_level="warning")


_console = logging.StreamHandler(sys.stderr)
_console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))


def setup_logging(verbose: bool = False) -> None:
    """Our own loggers only; Splink's chatter is kept to warnings."""
    for name in ("linkage", "flows"):
        lg = logging.getLogger(name)
        lg.setLevel(logging.DEBUG if verbose else logging.INFO)
        if _console not in lg.handlers:
            lg.addHandler(_console)
    logging.getLogger("splink").setLevel(logging.WARNING)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def hand_logging_to_prefect() -> None:
    """Inside a Prefect flow, Prefect's handlers print our loggers (and send them to its API)."""
    for name in ("linkage", "flows"):
        logging.getLogger(name).removeHandler(_console)


def main(application: typer.Typer = app) -> None:
    """Run the CLI, turning library errors into a message and an exit code."""
    setup_logging()
    try:
        application(standalone_mode=False)
    except LinkageError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise
