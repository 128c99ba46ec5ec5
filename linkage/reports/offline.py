"""Find what a browser would fetch from another machine when it opens a set of web pages.

Data Docs and the other reports are opened on servers with no internet: a page that loads a script,
a style sheet, a font or an image from a CDN renders broken there, and where it does reach the
internet it tells a third party who opened which page. :func:`find_external_urls` scans every
HTML, CSS and JavaScript file under a folder and lists each reference that would make the browser
request something from off the machine::

    for path, line, url in find_external_urls(site_dir):
        print(f"{path}:{line}: {url}")

What counts (a *fetch*):

* HTML: ``src``, ``srcset``/``imagesrcset``, ``poster``, ``background``, ``manifest``,
  ``<object data>``, ``codebase``/``archive``; ``href`` on ``<link>`` (unless every ``rel`` is
  one that loads nothing, such as ``canonical`` or ``alternate``), on ``<base>`` and on SVG
  elements (``<image>``, ``<use>``, ``xlink:href``); ``<meta http-equiv="refresh">``; the
  ``style`` attribute, ``on*`` handlers, ``javascript:`` URLs and ``<iframe srcdoc>``, scanned as
  CSS, JavaScript and HTML.
* CSS (files, ``<style>`` and ``style=``): ``url(...)``, ``src(...)``, ``@import`` and
  ``image-set(...)``; ``@namespace`` and comments are ignored.
* JavaScript (files, inline ``<script>``, JSON/importmap/speculation-rules blocks): a string or
  template literal that *starts with* an external URL and is used where a request is made:
  an argument of ``fetch``, ``import()``, ``importScripts``, ``XMLHttpRequest.open``,
  ``navigator.sendBeacon``, ``new Worker``/``WebSocket``/``EventSource``/``Audio``,
  ``serviceWorker.register``, ``window.open``, ``location.assign/replace``, jQuery's
  ``$.ajax/get/post/getJSON/getScript/load``, ``setAttribute("src"|"href"|...)``; assigned to
  ``.src``, ``.href``, ``.srcset``, ``.poster``, ``.data``, ``.action``, ``.background`` or
  ``location``; the value of an object key ``url``, ``uri``, ``src``, ``href`` or ``srcset``;
  a static ``import``/``export ... from``; or any literal whose path names a loadable resource
  (``.js``, ``.css``, images, fonts, ``.wasm``...) wherever it stands, which catches loaders
  such as the Google Analytics snippet that pass the URL through a variable. Markup and CSS held
  in a string (``'<img src="https://...">'``, ``"url(https://...)"``) are scanned as such.

What does not count: text a person reads (page text, a URL inside a sentence in a string such as
an error message), comments (licence headers, ``sourceMappingURL``), XML namespace URIs
(``http://www.w3.org/2000/svg``), ``$schema``/``@context`` identifiers, URLs that are only
compared, ``data:``/``blob:``/``javascript:``/``mailto:`` URLs, relative URLs, and anything on
this machine (``file:///...``, ``localhost``, ``127.0.0.0/8``, ``[::1]``). Hyperlinks that load
only when clicked (``<a href>``, ``<area href>``, ``<form action>``, ``ping``) are reported only
with ``include_links=True``.

The JavaScript rules are a static approximation: a URL assembled at run time, or a bare URL
stored in a variable and fetched later when its path names no resource type, is not seen. Pair
the scan with a browser test that blocks the network (``tests/browser.py``).
"""

from __future__ import annotations

import bisect
import html
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml", ".svg"})
CSS_SUFFIXES = frozenset({".css"})
JS_SUFFIXES = frozenset({".js", ".mjs", ".cjs"})
SCANNED_SUFFIXES = HTML_SUFFIXES | CSS_SUFFIXES | JS_SUFFIXES


@dataclass(frozen=True)
class ExternalReference:
    """One reference to another machine: where it is, the URL, and how it would be used."""

    path: Path
    line: int
    url: str
    context: str
    """What makes the request, e.g. ``<script src>``, ``css url()``, ``js fetch()``."""
    fetched: bool = True
    """True when opening the page (or its scripts) requests it; False for a link to click."""


class _Hit(NamedTuple):
    offset: int
    url: str
    context: str
    fetched: bool


def find_external_urls(path: Path, *, include_links: bool = False) -> list[tuple[Path, int, str]]:
    """List ``(file, line, url)`` for every off-machine request in the HTML/CSS/JS under ``path``.

    ``path`` is a folder (scanned recursively) or a single file. Lines are 1-based. With
    ``include_links=True`` hyperlinks that only load when clicked are listed too.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "p.html").write_text('<p>see https://example.org</p>\\n'
    ...                               '<script src="https://cdn.example.org/x.js"></script>')
    >>> [(p.name, line, url) for p, line, url in find_external_urls(d)]
    [('p.html', 2, 'https://cdn.example.org/x.js')]
    """
    return [
        (r.path, r.line, r.url) for r in scan_external_references(path, include_links=include_links)
    ]


def scan_external_references(path: Path, *, include_links: bool = False) -> list[ExternalReference]:
    """Like :func:`find_external_urls`, with the context of each reference."""
    path = Path(path)
    files = iter_scanned_files(path) if path.is_dir() else [path]
    found: list[ExternalReference] = []
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        hits = scan_text(text, _kind_of(file), include_links=include_links)
        starts = _line_starts(text)
        found.extend(
            ExternalReference(
                file, bisect.bisect_right(starts, h.offset), h.url, h.context, h.fetched
            )
            for h in hits
        )
    return found


def scan_text(text: str, kind: str, *, include_links: bool = False) -> list[_Hit]:
    """Scan one document of ``kind`` ``"html"``, ``"css"`` or ``"js"``; hits carry offsets."""
    out: list[_Hit] = []
    if kind == "html":
        _scan_html(text, 0, True, include_links, out)
    elif kind == "css":
        _scan_css(text, 0, True, out)
    elif kind == "js":
        _scan_js(text, 0, True, out)
    else:
        raise ValueError(f"unknown kind {kind!r}: expected 'html', 'css' or 'js'")
    if not include_links:
        out = [h for h in out if h.fetched]
    return sorted(set(out))


def _kind_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CSS_SUFFIXES:
        return "css"
    if suffix in JS_SUFFIXES:
        return "js"
    return "html"


def _line_starts(text: str) -> list[int]:
    return [0] + [m.end() for m in re.finditer("\n", text)]


# ---------------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------------

_NETWORK_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp"})
_SCHEME_RE = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*):")
_STRIPPED_CHARS = "".join(chr(c) for c in range(0x21))  # C0 controls and space, as URL parsing

XML_NAMESPACES = frozenset(
    {
        "http://www.w3.org/2000/svg",
        "http://www.w3.org/1999/xhtml",
        "http://www.w3.org/1999/xlink",
        "http://www.w3.org/xml/1998/namespace",
        "http://www.w3.org/2000/xmlns/",
        "http://www.w3.org/1998/math/mathml",
        "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    }
)


def is_external(url: str) -> bool:
    """True if a browser resolving ``url`` (from a local page) would contact another machine.

    Follows the URL standard's leniency: surrounding spaces, tabs and newlines inside, backslashes
    for slashes and missing slashes after ``http:`` do not make a URL local.

    >>> [is_external(u) for u in ("https://cdn.x/a.js", "//cdn.x/a.js", " HTTP:\\\\cdn.x", "a.js")]
    [True, True, True, False]
    >>> [is_external(u) for u in ("http://127.0.0.1:8000/", "file:///tmp/a", "data:,x", "#top")]
    [False, False, False, False]
    """
    u = re.sub(r"[\t\n\r]", "", url.strip(_STRIPPED_CHARS)).replace("\\", "/")
    m = _SCHEME_RE.match(u)
    if m:
        scheme = m.group(1).lower()
        rest = u[m.end() :]
        if scheme in _NETWORK_SCHEMES:
            return _is_remote_host(_host_of(rest.lstrip("/")))
        if scheme == "file" and rest.startswith("//"):
            host = _host_of(rest[2:])
            return bool(host) and _is_remote_host(host)
        return False
    if u.startswith("//"):
        return _is_remote_host(_host_of(u[2:]))
    return False


def _host_of(authority_and_path: str) -> str:
    authority = re.split(r"[/?#]", authority_and_path, maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_remote_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback and host != "0.0.0.0"
    except ValueError:
        return True


def _is_namespace(url: str) -> bool:
    return url.strip().lower().rstrip("/") in {n.rstrip("/") for n in XML_NAMESPACES}


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------


@dataclass
class Attr:
    """An attribute of a start tag, with spans (offsets into the parsed text)."""

    name: str
    value: str | None
    start: int
    end: int
    value_start: int
    value_end: int


@dataclass
class StartTag:
    tag: str
    attrs: list[Attr]
    start: int
    end: int
    self_closing: bool = False

    def get(self, name: str) -> str | None:
        for a in self.attrs:
            if a.name == name:
                return a.value
        return None

    def attr(self, name: str) -> Attr | None:
        for a in self.attrs:
            if a.name == name:
                return a
        return None


@dataclass
class EndTag:
    tag: str
    start: int
    end: int


@dataclass
class Text:
    """Character data; ``raw_in`` names the element (``script``/``style``) whose raw text it is."""

    text: str
    start: int
    raw_in: str | None = None


HtmlEvent = StartTag | EndTag | Text

_TAG_NAME_RE = re.compile(r"<[^\s/>]+")
_ATTR_RE = re.compile(r"""([^\s/>"'=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")


class _EventParser(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        self._text = text
        self._starts = _line_starts(text)
        self.events: list[HtmlEvent] = []

    def _offset(self) -> int:
        line, col = self.getpos()
        return self._starts[line - 1] + col

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._start(tag, False)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self._start(tag, True)

    def _start(self, tag: str, self_closing: bool) -> None:
        start = self._offset()
        raw = self.get_starttag_text() or ""
        self.events.append(
            StartTag(tag, _parse_attrs(raw, start), start, start + len(raw), self_closing)
        )

    def handle_endtag(self, tag: str) -> None:
        start = self._offset()
        close = self._text.find(">", start)
        self.events.append(EndTag(tag, start, len(self._text) if close < 0 else close + 1))

    def handle_data(self, data: str) -> None:
        self.events.append(Text(data, self._offset(), self.cdata_elem))  # type: ignore[attr-defined]


def _parse_attrs(raw: str, base: int) -> list[Attr]:
    m = _TAG_NAME_RE.match(raw)
    pos = m.end() if m else 0
    attrs = []
    for a in _ATTR_RE.finditer(raw, pos):
        name = a.group(1).lower()
        if name.endswith("/") or not name:
            continue
        for group in (2, 3, 4):
            if a.group(group) is not None:
                value: str | None = html.unescape(a.group(group))
                vs, ve = a.span(group)
                break
        else:
            value, vs, ve = None, a.end(), a.end()
        attrs.append(Attr(name, value, base + a.start(), base + a.end(), base + vs, base + ve))
    return attrs


def parse_html(text: str) -> list[HtmlEvent]:
    """Start tags, end tags and text of an HTML document, with offsets (for scanning/rewriting)."""
    parser = _EventParser(text)
    parser.feed(text)
    parser.close()
    return parser.events


_FETCH_ATTRS = frozenset(
    {"src", "poster", "background", "lowsrc", "dynsrc", "manifest", "codebase"}
)
_SRCSET_ATTRS = frozenset({"srcset", "imagesrcset"})
_LINK_TAGS = frozenset({"a", "area"})
# <link rel> values that make the browser load nothing; any other rel (stylesheet, icon, preload,
# prefetch, preconnect, dns-prefetch, manifest, modulepreload, unknown ones...) counts as a fetch.
_NON_FETCH_RELS = frozenset(
    {
        "alternate", "author", "bookmark", "canonical", "external", "help", "license", "me",
        "next", "nofollow", "noopener", "noreferrer", "prev", "search", "shortlink", "tag",
    }
)  # fmt: skip
_URL_LIST_TYPES = frozenset({"importmap", "speculationrules"})


def _scan_html(text: str, base: int, exact: bool, include_links: bool, out: list[_Hit]) -> None:
    def at(offset: int) -> int:
        return base + offset if exact else base

    script_type = ""
    for ev in parse_html(text):
        if isinstance(ev, StartTag):
            if ev.tag == "script":
                script_type = (ev.get("type") or "").split(";")[0].strip().lower()
            _scan_tag(ev, at, include_links, out)
        elif isinstance(ev, Text) and ev.raw_in == "style":
            _scan_css(ev.text, at(ev.start), exact, out)
        elif isinstance(ev, Text) and ev.raw_in == "script":
            if "html" in script_type or "template" in script_type:
                _scan_html(ev.text, at(ev.start), exact, include_links, out)
            else:
                _scan_js(ev.text, at(ev.start), exact, out, all_urls=script_type in _URL_LIST_TYPES)


def _scan_tag(ev: StartTag, at, include_links: bool, out: list[_Hit]) -> None:
    tag = ev.tag
    for a in ev.attrs:
        n, v = a.name, a.value
        if v is None:
            continue
        pos = at(a.value_start)

        def add(url: str, context: str, fetched: bool = True, pos: int = pos) -> None:
            if is_external(url) and (fetched or include_links):
                out.append(_Hit(pos, url.strip(), context, fetched))

        if n in _FETCH_ATTRS or (n == "data" and tag == "object"):
            add(v, f"<{tag} {n}>")
        elif n in _SRCSET_ATTRS:
            for url in srcset_urls(v):
                add(url, f"<{tag} {n}>")
        elif n == "archive":
            for url in re.split(r"[\s,]+", v):
                add(url, f"<{tag} {n}>")
        elif n in ("href", "xlink:href"):
            if v.strip().lower().startswith("javascript:"):
                _scan_js(v.strip()[len("javascript:") :], pos, False, out)
            elif tag in _LINK_TAGS:
                add(v, f"<{tag} {n}>", fetched=False)
            elif tag == "link":
                rels = set((ev.get("rel") or "").lower().split())
                add(
                    v,
                    f"<link rel={' '.join(sorted(rels)) or '?'} href>",
                    not rels or not rels <= _NON_FETCH_RELS,
                )
            else:
                add(v, f"<{tag} {n}>")
        elif n in ("action", "formaction", "ping"):
            for url in v.split() if n == "ping" else [v]:
                add(url, f"<{tag} {n}>", fetched=False)
        elif n == "content" and tag == "meta" and (ev.get("http-equiv") or "").lower() == "refresh":
            m = re.search(r"url\s*=\s*['\"]?([^'\"]+)", v, re.I)
            if m:
                add(m.group(1), "<meta http-equiv=refresh>")
        elif n == "style":
            _scan_css(v, pos, False, out)
        elif n.startswith("on"):
            _scan_js(v, pos, False, out)
        elif n == "srcdoc":
            _scan_html(v, pos, False, include_links, out)


def srcset_urls(value: str) -> list[str]:
    """The URLs of a ``srcset`` attribute (image candidate strings, as the HTML standard splits)."""
    urls, i, n = [], 0, len(value)
    while i < n:
        while i < n and (value[i].isspace() or value[i] == ","):
            i += 1
        j = i
        while j < n and not value[j].isspace():
            j += 1
        url = value[i:j]
        if url.endswith(","):
            url = url.rstrip(",")
            i = j
        else:
            depth = 0  # skip the descriptors, up to a comma outside parentheses
            while j < n and (value[j] != "," or depth):
                depth += {"(": 1, ")": -1}.get(value[j], 0)
                j += 1
            i = j
        if url:
            urls.append(url)
    return urls


# ---------------------------------------------------------------------------------------------
# CSS
# ---------------------------------------------------------------------------------------------

_CSS_COMMENT_RE = re.compile(r"/\*.*?(?:\*/|\Z)", re.S)
_CSS_NAMESPACE_RE = re.compile(r"@namespace\b[^;{}]*;?", re.I)
_CSS_STRING = r""""((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)'"""
CSS_URL_RE = re.compile(
    r"(?<![\w-])(url|src)\(\s*(?:" + _CSS_STRING + r"""|([^)"'\s]*))\s*\)""", re.I
)
_CSS_IMPORT_RE = re.compile(r"@import\s+(?:" + _CSS_STRING + ")", re.I)
_CSS_IMAGE_SET_RE = re.compile(r"(?<![\w-])(?:-webkit-)?image-set\(", re.I)
_CSS_STRING_RE = re.compile(_CSS_STRING)


def _blank(m: re.Match) -> str:
    return re.sub(r"[^\n]", " ", m.group())


def css_without_comments(css: str) -> str:
    """``css`` with comments and ``@namespace`` rules blanked out (same length, same lines)."""
    return _CSS_NAMESPACE_RE.sub(_blank, _CSS_COMMENT_RE.sub(_blank, css))


def _scan_css(text: str, base: int, exact: bool, out: list[_Hit]) -> None:
    def at(offset: int) -> int:
        return base + offset if exact else base

    clean = css_without_comments(text)
    for m in CSS_URL_RE.finditer(clean):
        url = next(g for g in (m.group(2), m.group(3), m.group(4)) if g is not None)
        if is_external(url):
            out.append(_Hit(at(m.start()), url.strip(), f"css {m.group(1).lower()}()", True))
    for m in _CSS_IMPORT_RE.finditer(clean):
        url = m.group(1) if m.group(1) is not None else m.group(2)
        if is_external(url):
            out.append(_Hit(at(m.start()), url.strip(), "css @import", True))
    for m in _CSS_IMAGE_SET_RE.finditer(clean):
        depth, j = 1, m.end()
        while j < len(clean) and depth:
            depth += {"(": 1, ")": -1}.get(clean[j], 0)
            j += 1
        for s in _CSS_STRING_RE.finditer(clean, m.end(), j):
            url = s.group(1) if s.group(1) is not None else s.group(2)
            if is_external(url):
                out.append(_Hit(at(s.start()), url.strip(), "css image-set()", True))


# ---------------------------------------------------------------------------------------------
# JavaScript
# ---------------------------------------------------------------------------------------------


class _Tok(NamedTuple):
    kind: str  # ident, num, str, tpl, regex, punct
    text: str
    value: str  # decoded value of a string; the raw body of a template literal
    start: int


@dataclass
class _Frame:
    bracket: str
    callee: str | None = None
    receiver: str | None = None
    first_str: str | None = None


_WS_COMMENT_RE = re.compile(r"(?:\s+|//[^\n]*|/\*[\s\S]*?(?:\*/|\Z))+")
_STRING_RES = {q: re.compile(q + r"(?:[^" + q + r"\\\n]|\\[\s\S])*" + q + "?") for q in "\"'"}
_IDENT_RE = re.compile(r"[A-Za-z_$\u00a0-\uffff][\w$\u00a0-\uffff]*")
_NUM_RE = re.compile(r"\d[\w.]*|\.\d\w*")
_PUNCT_RE = re.compile(
    r">>>=|\.\.\.|===|!==|\*\*=|<<=|>>=|>>>|\?\?=|&&=|\|\|=|=>|==|!=|<=|>=|&&|\|\||\?\?|\?\."
    r"|\+\+|--|[-+*/%&|^]=|<<|>>|\*\*|[^\s]"
)
_REGEX_RE = re.compile(r"/(?:[^/\\\[\n]|\\.|\[(?:[^\]\\\n]|\\.)*\])+/[A-Za-z]*")
_EXPR_KEYWORDS = frozenset(
    {"return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case", "do",
     "else", "yield", "await"}
)  # fmt: skip
_JS_ESCAPE_RE = re.compile(r"\\(u\{[0-9a-fA-F]+\}|u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|\r\n|[\s\S])")
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


def _js_unescape(body: str) -> str:
    def rep(m: re.Match) -> str:
        e = m.group(1)
        if e[0] in "ux" and len(e) > 1:
            code = int(e[2:-1] if e.startswith("u{") else e[1:], 16)
            return chr(code) if code <= 0x10FFFF else ""
        if e in ("\n", "\r\n", "\r", "\u2028", "\u2029"):
            return ""
        return _SIMPLE_ESCAPES.get(e, e)

    return _JS_ESCAPE_RE.sub(rep, body) if "\\" in body else body


def _regex_allowed(toks: list[_Tok]) -> bool:
    if not toks:
        return True
    prev = toks[-1]
    if prev.kind == "punct":
        return prev.text not in (")", "]", "}", "++", "--")
    if prev.kind == "ident":
        return prev.text in _EXPR_KEYWORDS
    return False


def _tokenize(
    text: str, pos: int, nested: list[list[_Tok]], stop_at_brace: bool
) -> tuple[list[_Tok], int]:
    """Tokens from ``pos`` (to the end, or past the ``}`` closing a template substitution)."""
    toks: list[_Tok] = []
    n, depth = len(text), 0
    while pos < n:
        m = _WS_COMMENT_RE.match(text, pos)
        if m:
            pos = m.end()
            continue
        c = text[pos]
        if c in "\"'":
            m = _STRING_RES[c].match(text, pos)
            assert m
            raw = m.group()
            body = raw[1:-1] if len(raw) > 1 and raw.endswith(c) else raw[1:]
            toks.append(_Tok("str", raw, _js_unescape(body), pos))
            pos = m.end()
        elif c == "`":
            start, pos = pos, pos + 1
            while pos < n and text[pos] != "`":
                if text[pos] == "\\":
                    pos += 2
                elif text.startswith("${", pos):
                    inner, pos = _tokenize(text, pos + 2, nested, True)
                    nested.append(inner)
                else:
                    pos += 1
            pos = min(pos + 1, n)
            toks.append(
                _Tok("tpl", text[start:pos], _js_unescape(text[start + 1 : pos - 1]), start)
            )
        elif c == "/" and _regex_allowed(toks) and (m := _REGEX_RE.match(text, pos)):
            toks.append(_Tok("regex", m.group(), m.group(), pos))
            pos = m.end()
        elif m := _IDENT_RE.match(text, pos):
            toks.append(_Tok("ident", m.group(), m.group(), pos))
            pos = m.end()
        elif m := _NUM_RE.match(text, pos):
            toks.append(_Tok("num", m.group(), m.group(), pos))
            pos = m.end()
        else:
            m = _PUNCT_RE.match(text, pos)
            assert m
            p = m.group()
            if stop_at_brace:
                if p == "{":
                    depth += 1
                elif p == "}":
                    if depth == 0:
                        return toks, m.end()
                    depth -= 1
            toks.append(_Tok("punct", p, p, pos))
            pos = m.end()
    return toks, pos


# A call of one of these, with an external URL literal among its direct arguments, is a request.
_REQUEST_CALLS = frozenset(
    {"fetch", "import", "importScripts", "Worker", "SharedWorker", "WebSocket", "EventSource",
     "sendBeacon", "Audio", "register", "open", "ajax", "get", "post", "getJSON", "getScript",
     "load"}
)  # fmt: skip
_LOCATION_CALLS = frozenset({"assign", "replace"})  # only on `location`
_SET_ATTRIBUTE_CALLS = frozenset({"setAttribute", "setAttributeNS"})
_URL_ATTRIBUTES = frozenset(
    {"src", "href", "xlink:href", "srcset", "poster", "data", "action", "background", "formaction"}
)
_ASSIGNED_PROPS = frozenset(
    {"src", "href", "srcset", "poster", "data", "action", "background", "location"}
)
_URL_KEYS = frozenset({"url", "uri", "src", "href", "srcset"})
_IDENTIFIER_KEYS = frozenset({"$schema", "$id", "@context", "@id", "@type", "@vocab", "xmlns"})
_NOT_REQUEST_CALLS = frozenset(
    {"createElementNS", "getAttributeNS", "hasAttributeNS", "removeAttributeNS", "lookupPrefix",
     "isDefaultNamespace", "getElementsByTagNameNS", "indexOf", "lastIndexOf", "startsWith",
     "endsWith", "includes", "test", "match", "matchAll", "search", "split"}
)  # fmt: skip
_COMPARISONS = frozenset({"==", "===", "!=", "!=="})
_RESOURCE_RE = re.compile(
    r"\.(?:m?js|css|png|jpe?g|gif|svg|webp|avif|ico|bmp|woff2?|ttf|otf|eot|wasm|mp3|mp4|webm|ogg)$",
    re.I,
)
_MARKUP_RE = re.compile(
    r"<[a-zA-Z][^<>]*\s(?:src|href|srcset|poster|background|data|style)\s*=", re.I
)
_CSS_HINT_RE = re.compile(r"(?<![\w-])(?:url|src|image-set)\(|@import", re.I)
_URL_PREFIX_RE = re.compile(r"(?:(?:https?|wss?|ftp):)?//", re.I)


def _scan_js(text: str, base: int, exact: bool, out: list[_Hit], all_urls: bool = False) -> None:
    nested: list[list[_Tok]] = []
    toks, _ = _tokenize(text, 0, nested, False)
    for stream in [toks, *nested]:
        _analyse(stream, base, exact, out, all_urls)


def _key_before(toks: list[_Tok], k: int) -> str | None:
    """The key if ``toks[k]`` is the value in ``key: value``."""
    is_value = k >= 2 and toks[k - 1].text == ":" and toks[k - 2].kind in ("ident", "str")
    if is_value and (k < 3 or toks[k - 3].text in ("{", ",")):
        return toks[k - 2].value
    return None


def _analyse(toks: list[_Tok], base: int, exact: bool, out: list[_Hit], all_urls: bool) -> None:
    stack: list[_Frame] = []
    for k, t in enumerate(toks):
        if t.kind == "punct":
            if t.text in "([{":
                opened = _Frame(t.text)
                if t.text == "(" and k and toks[k - 1].kind == "ident":
                    opened.callee = toks[k - 1].text
                    if k >= 3 and toks[k - 2].text in (".", "?.") and toks[k - 3].kind == "ident":
                        opened.receiver = toks[k - 3].text
                stack.append(opened)
            elif t.text in ")]}" and stack:
                stack.pop()
            continue
        if t.kind not in ("str", "tpl"):
            continue
        frame = stack[-1] if stack else None
        if frame and frame.bracket == "(" and toks[k - 1].text == "(" and t.kind == "str":
            frame.first_str = t.value
        pos = base + t.start if exact else base
        value = t.value
        if _MARKUP_RE.search(value):
            _scan_html(value, pos, False, False, out)
        if _CSS_HINT_RE.search(value):
            _scan_css(value, pos, False, out)
        url = _leading_url(value, toks, k)
        if url is None or _is_namespace(url) or _not_a_request(toks, k, frame):
            continue
        context = "js url literal" if all_urls else _request_context(toks, k, frame, url)
        if context:
            out.append(_Hit(pos, url, context, True))


def _leading_url(value: str, toks: list[_Tok], k: int) -> str | None:
    words = value.split(None, 1)
    if not words:
        return None
    first = words[0]
    if is_external(first):
        return first
    concatenated = k + 1 < len(toks) and toks[k + 1].text == "+"
    if concatenated and _URL_PREFIX_RE.fullmatch(first):
        return first + "..."
    return None


def _not_a_request(toks: list[_Tok], k: int, frame: _Frame | None) -> bool:
    if _key_before(toks, k) in _IDENTIFIER_KEYS:
        return True
    prev = toks[k - 1].text if k else ""
    nxt = toks[k + 1].text if k + 1 < len(toks) else ""
    if prev in _COMPARISONS or nxt in _COMPARISONS or prev == "case":
        return True
    if frame and frame.bracket == "(" and frame.callee in _NOT_REQUEST_CALLS:
        return True
    return bool(frame and frame.callee == "replace" and frame.receiver != "location")


def _request_context(toks: list[_Tok], k: int, frame: _Frame | None, url: str) -> str | None:
    if frame and frame.bracket == "(" and frame.callee:
        callee = frame.callee
        if callee in _REQUEST_CALLS or (callee in _LOCATION_CALLS and frame.receiver == "location"):
            return f"js {callee}()"
        if callee in _SET_ATTRIBUTE_CALLS and (frame.first_str or "").lower() in _URL_ATTRIBUTES:
            return f"js {callee}({frame.first_str!r})"
    if k >= 2 and toks[k - 1].text == "=":
        target = toks[k - 2]
        is_property = target.text == "location" or (k >= 3 and toks[k - 3].text in (".", "?."))
        if target.kind == "ident" and target.text in _ASSIGNED_PROPS and is_property:
            return f"js .{target.text} ="
    key = _key_before(toks, k)
    if key is not None and key.lower() in _URL_KEYS:
        return f"js {{{key}: ...}}"
    if k and toks[k - 1].kind == "ident" and toks[k - 1].text in ("from", "import"):
        return "js import"
    path = re.split(r"[?#]", url, maxsplit=1)[0]
    if _RESOURCE_RE.search(path):
        return "js resource url"
    return None


def iter_scanned_files(path: Path) -> Iterable[Path]:
    """The files :func:`find_external_urls` reads under ``path``."""
    return sorted(
        p for p in Path(path).rglob("*") if p.is_file() and p.suffix.lower() in SCANNED_SUFFIXES
    )
