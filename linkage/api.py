"""The search service's HTTP API (FastAPI; ``linkage serve`` runs it under uvicorn).

Endpoints: ``GET``/``POST /search``, ``GET /lookup``, ``GET /health``, the case workers' search
page at ``/``, the API reference at ``/docs`` and ``/openapi.json``. Every page is served from
here with inline styles and scripts: nothing is fetched from a CDN (FastAPI's own ``/docs`` and
``/redoc`` would load Swagger UI and ReDoc from one, so they are switched off).

Who is searching comes from the ``X-User`` header, set by the sign-in proxy in front of the
service; without it ``/``, ``/search`` and ``/lookup`` answer 401. Errors are turned into HTTP
statuses in one place (:func:`_error_handlers`): 400 a query not specific enough, 422 a malformed
value, 503 nothing published yet; bad input never gets a 5xx. Responses are not cacheable, pages
carry a Content-Security-Policy that allows only this origin, and FastAPI's built-in
OpenTelemetry is switched off.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from linkage.config import ProjectConfig
from linkage.errors import InvalidQueryError, LinkageError, ModelError, QueryError, SearchError
from linkage.search import LookupResult, Searcher, SearchResult
from linkage.search_query import SearchQuery, validation_problems

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)

_AUDITED: dict[str, Literal["search", "lookup"]] = {"/search": "search", "/lookup": "lookup"}


class ApiError(BaseModel):
    """Every error's body."""

    error: str = Field(description="A short code: invalid_input, not_specific_enough, ...")
    message: str = Field(description="What is wrong and what would do (never a value).")
    problems: list[str] | None = Field(None, description="One line per bad field (422).")


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ApiError, "description": "Not specific enough: says what would be."},
    401: {"description": "No `X-User` header."},
    422: {"model": ApiError, "description": "A malformed value (a bad date, an unknown scheme)."},
    503: {"model": ApiError, "description": "Nothing published yet."},
}


class _SecurityHeaders:
    """Responses are not cached (they hold personal data) and not framed or sniffed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Cache-Control", "no-store")
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Frame-Options"] = "DENY"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _user(
    x_user: Annotated[
        str | None,
        Header(description="Who is searching (set by the sign-in proxy). Recorded in the audit."),
    ] = None,
) -> str:
    if x_user is None or not x_user.strip() or len(x_user) > 200:
        raise HTTPException(401, "the X-User header (who is searching) is required")
    return x_user.strip()


User = Annotated[str, Depends(_user)]


def _json_error(status: int, error: str, message: str, problems: list[str] | None = None) -> Any:
    body: dict[str, Any] = {"error": error, "message": message}
    if problems is not None:
        body["problems"] = problems
    return JSONResponse(body, status_code=status)


def _error_handlers(app: FastAPI, searcher: Searcher) -> None:
    @app.exception_handler(InvalidQueryError)
    def _invalid(request: Request, e: InvalidQueryError) -> Any:
        return _json_error(422, "invalid_input", str(e), e.problems)

    @app.exception_handler(SearchError)
    def _refused(request: Request, e: SearchError) -> Any:
        return _json_error(400, e.reason, str(e))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError) -> Any:
        problems = validation_problems(e.errors())
        action = _AUDITED.get(request.url.path)
        user = request.headers.get("x-user", "").strip()
        if action and user:  # refused before it reached the searcher: audit it here
            body = e.body if isinstance(e.body, dict) else {"body": str(e.body)[:200]}
            asked = dict(request.query_params) or body
            searcher.audit.record(
                user=user, action=action, query=asked, results=0, outcome="refused",
                reason="invalid_input", release=None,
            )  # fmt: skip
        return _json_error(
            422, "invalid_input", "invalid request: " + "; ".join(problems), problems
        )

    @app.exception_handler(QueryError)
    @app.exception_handler(ModelError)
    def _unavailable(request: Request, e: LinkageError) -> Any:
        return _json_error(503, "unavailable", str(e))


def create_app(config: ProjectConfig, *, searcher: Searcher | None = None) -> FastAPI:
    """The API for ``config``'s current release (loaded now; reloaded when a new one is
    published).

    Raises:
        QueryError: nothing published yet. ModelError: no model.
    """
    searcher = searcher or Searcher(config)
    app = FastAPI(
        title=f"linkage search: {config.project}",
        version="1",
        description=(
            "Search the master person index by example, and cross-reference one agency's record "
            "or identifier to every agency's (IHE PIXm). Every call needs the `X-User` header "
            "and is recorded in the audit log."
        ),
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        # FastAPI's built-in OpenTelemetry would record validation failures (values included)
        # and could export them if the environment configured an exporter: off.
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
    )
    app.state.searcher = searcher
    _error_handlers(app, searcher)

    app.add_middleware(_SecurityHeaders)

    @app.get("/search", response_model=SearchResult, tags=["search"], responses=_ERRORS)
    def search_get(
        user: User,
        given_name: Annotated[str | None, Query(examples=["Zoë"])] = None,
        family_name: Annotated[str | None, Query(examples=["O'Brien"])] = None,
        date_of_birth: Annotated[str | None, Query(description="YYYY-MM-DD")] = None,
        postcode: str | None = None,
        sex: Annotated[str | None, Query(description="M, F or X")] = None,
        id: Annotated[
            list[str] | None,
            Query(description="An identifier as scheme=value (repeat for more)."),
        ] = None,
    ) -> Response:
        """Search by example (query parameters). Needs an identifier, or family name + date of
        birth, or given name + family name + postcode."""
        fields = {
            "given_name": given_name, "family_name": family_name,
            "date_of_birth": date_of_birth, "postcode": postcode, "sex": sex,
            "identifiers": id or [],
        }  # fmt: skip
        return _json(searcher.search(fields, user=user))

    @app.post("/search", response_model=SearchResult, tags=["search"], responses=_ERRORS)
    def search_post(query: SearchQuery, user: User) -> Response:
        """Search by example (a JSON body). Same rules as `GET /search`."""
        return _json(searcher.search(query, user=user))

    @app.get("/lookup", response_model=LookupResult, tags=["search"], responses=_ERRORS)
    def lookup(
        user: User,
        agency: str | None = None,
        source_record_id: str | None = None,
        scheme: Annotated[str | None, Query(examples=["nhs_number"])] = None,
        value: str | None = None,
    ) -> LookupResult:
        """Every agency's records and identifiers of the person holding one agency's record
        (`agency` + `source_record_id`) or one identifier (`scheme` + `value`)."""
        return searcher.lookup(
            user=user, agency=agency, source_record_id=source_record_id, scheme=scheme, value=value
        )

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """The release being served (reloaded first if a new one was published)."""
        index = searcher.index()
        return {
            "status": "ok",
            "release": index.run_id,
            "model_version": index.model_version,
            "records": index.records,
            "persons": index.persons,
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(user: User) -> HTMLResponse:
        return _page(
            "search.html.j2",
            user=user,
            project=config.project,
            agencies=[a.name for a in config.agencies],
            schemes=sorted(config.identifiers),
            result_cap=config.search.result_cap,
        )

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        base = str(request.base_url).rstrip("/")
        return _page("docs.html.j2", spec=app.openapi(), base=base, examples=_examples(base))

    return app


def _json(model: BaseModel) -> Response:
    """The result as JSON, serialised once by pydantic (the route's ``response_model`` documents
    it; FastAPI would validate and convert it again)."""
    return Response(model.model_dump_json(), media_type="application/json")


def _examples(base: str) -> dict[str, str]:
    """An example ``curl`` call per endpoint, for the API reference."""
    user = "-H 'X-User: jsmith'"
    body = '{"family_name": "OBrien", "date_of_birth": "1984-03-01", "identifiers": {}}'
    return {
        "get /search": f"curl {user} '{base}/search?family_name=OBrien&date_of_birth=1984-03-01'",
        "post /search": (
            f"curl {user} -H 'Content-Type: application/json' \\\n  -d '{body}' {base}/search"
        ),
        "get /lookup": f"curl {user} '{base}/lookup?scheme=nhs_number&value=9434765919'",
        "get /health": f"curl {base}/health",
    }


def _page(template: str, **context: Any) -> HTMLResponse:
    """A page with inline styles and scripts, allowed by a per-response nonce and nothing else."""
    nonce = secrets.token_urlsafe(16)
    html = _env.get_template(template).render(nonce=nonce, **context)
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": csp})
