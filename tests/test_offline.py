"""The external-URL scanner: what a browser would fetch from off the machine, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkage.reports.offline import (
    find_external_urls,
    is_external,
    scan_external_references,
    scan_text,
    srcset_urls,
)

ASSETS = Path(__file__).parents[1] / "linkage" / "reports" / "assets"


def urls(text: str, kind: str, **kw) -> set[str]:
    return {h.url for h in scan_text(text, kind, **kw)}


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.org/a.js",
        "http://example.org",
        "//cdn.example.org/a.js",
        "  https://example.org/  ",
        "HTTPS://EXAMPLE.ORG",
        "https:\\\\example.org\\a.js",
        "http:example.org/a.js",
        "ht\ntps://example.org",
        "wss://socket.example.org/",
        "ftp://files.example.org/x",
        "https://user:pw@example.org:8443/x",
        "http://10.0.0.5/x",
        "http://[2001:db8::1]/x",
        "file://fileserver/share/x.js",
    ],
)
def test_external_urls(url):
    assert is_external(url)


@pytest.mark.parametrize(
    "url",
    [
        "static/vendor/jquery.min.js",
        "../index.html",
        "/absolute/path.css",
        "#section-1",
        "?q=1",
        "data:image/png;base64,AAAA",
        "blob:https://example.org/123",
        "javascript:void(0)",
        "mailto:ig-lead@example.org",
        "about:blank",
        "file:///tmp/docs/index.html",
        "http://127.0.0.1:8000/",
        "http://localhost:8080/x",
        "https://api.localhost/x",
        "http://[::1]/x",
        "https://",
        "",
    ],
)
def test_local_urls(url):
    assert not is_external(url)


def test_srcset_candidates():
    assert srcset_urls("a.png 1x, https://x.org/b.png 2x,c.png") == [
        "a.png",
        "https://x.org/b.png",
        "c.png",
    ]
    assert srcset_urls("https://x.org/a,b.png 100w") == ["https://x.org/a,b.png"]


POSITIVE_HTML = """<!DOCTYPE html>
<html manifest="https://manifest.example/app.appcache">
<head>
  <base href="https://base.example/">
  <link rel="stylesheet" href="https://css.example/bootstrap.min.css">
  <link rel="icon" href="//icon.example/favicon.ico">
  <link rel="preconnect" href="https://preconnect.example">
  <link rel="dns-prefetch" href="//dns.example">
  <link rel="preload" as="image" imagesrcset="https://preload.example/a.png 1x">
  <meta http-equiv="refresh" content="5; url=https://refresh.example/">
  <script src="https://js.example/jquery.min.js"></script>
  <script type="module">import x from "https://esm.example/mod.js";</script>
  <script>
    fetch("https://fetch.example/api");
    var xhr = new XMLHttpRequest(); xhr.open("GET", "https://xhr.example/data");
  </script>
  <style>
    @import "https://import.example/a.css";
    @font-face { font-family: X; src: url('https://font.example/x.woff2') format("woff2"); }
    body { background-image: image-set("https://imageset.example/bg.png" 1x); }
  </style>
</head>
<body background="https://bodybg.example/bg.gif">
  <img src="https://img.example/logo.png?d=2024&amp;id=1" alt="logo">
  <img srcset="small.png 1x, https://srcset.example/big.png 2x">
  <picture><source srcset="https://source.example/a.webp"></picture>
  <video poster="https://poster.example/p.jpg"><track src="https://track.example/t.vtt"></video>
  <iframe src="https://iframe.example/"></iframe>
  <iframe srcdoc="&lt;img src=&quot;https://srcdoc.example/i.png&quot;&gt;"></iframe>
  <object data="https://object.example/x.swf"></object>
  <embed src="https://embed.example/x.pdf">
  <div style="background: url(https://styleattr.example/bg.png)"></div>
  <button onclick="navigator.sendBeacon('https://onclick.example/b')">go</button>
  <a href="javascript:fetch('https://jsurl.example/')">x</a>
  <svg><image href="https://svgimage.example/i.png"/><use xlink:href="https://svguse.example/s.svg#i"/></svg>
  <script type="importmap">{"imports": {"lib": "https://importmap.example/lib.js"}}</script>
  <script type="text/template"><img src="https://template.example/t.png"></script>
</body>
</html>
"""

EXPECTED_FETCHES = {
    "https://manifest.example/app.appcache",
    "https://base.example/",
    "https://css.example/bootstrap.min.css",
    "//icon.example/favicon.ico",
    "https://preconnect.example",
    "//dns.example",
    "https://preload.example/a.png",
    "https://refresh.example/",
    "https://js.example/jquery.min.js",
    "https://esm.example/mod.js",
    "https://fetch.example/api",
    "https://xhr.example/data",
    "https://import.example/a.css",
    "https://font.example/x.woff2",
    "https://imageset.example/bg.png",
    "https://bodybg.example/bg.gif",
    "https://img.example/logo.png?d=2024&id=1",
    "https://srcset.example/big.png",
    "https://source.example/a.webp",
    "https://poster.example/p.jpg",
    "https://track.example/t.vtt",
    "https://iframe.example/",
    "https://srcdoc.example/i.png",
    "https://object.example/x.swf",
    "https://embed.example/x.pdf",
    "https://styleattr.example/bg.png",
    "https://onclick.example/b",
    "https://jsurl.example/",
    "https://svgimage.example/i.png",
    "https://svguse.example/s.svg#i",
    "https://importmap.example/lib.js",
    "https://template.example/t.png",
}


def test_html_positives(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(POSITIVE_HTML)
    found = find_external_urls(tmp_path)
    assert {url for _, _, url in found} == EXPECTED_FETCHES
    assert all(path == page for path, _, _ in found)
    lines = POSITIVE_HTML.splitlines()
    for _, line, url in found:  # each reported line holds the reference (decoded or not)
        raw = lines[line - 1]
        assert url.split("?")[0] in raw or "srcdoc" in raw, (line, url)


NEGATIVE_HTML = """<!DOCTYPE html>
<!-- Generated from https://comment.example/template.html -->
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
  <link rel="canonical" href="https://canonical.example/page">
  <link rel="alternate" type="application/rss+xml" href="https://feed.example/rss">
  <link rel="stylesheet" href="static/local.css">
  <meta property="og:image" content="https://og.example/card.png">
  <script src="static/vendor/jquery.min.js"></script>
  <style>
    /*! Bootstrap v4.3.1 (https://getbootstrap.com/) | MIT (https://licence.example/) */
    @namespace svg url(http://www.w3.org/2000/svg);
    .x{background:url("data:image/svg+xml,%3csvg xmlns='http://www.w3.org/2000/svg'/%3e")}
    .y { background: url(../images/local.png); }
  </style>
  <script>
    // Docs: https://linecomment.example/docs
    /* Licensed under https://blockcomment.example/licence */
    var ns = document.createElementNS("http://www.w3.org/2000/svg", "g");
    var spec = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", data: {values: []}};
    var message = "See https://prose.example/help for details";
    if (location.href === "https://compared.example/") { console.log("same"); }
    var pattern = /https?:\\/\\/regex.example/;
    var homepage = "https://homepage.example/";
    local.src = "static/images/logo.png";
    fetch("http://127.0.0.1:8000/api");
  </script>
  <script type="application/ld+json">{"@context": "https://schema.org", "@type": "Dataset"}</script>
</head>
<body>
  <p>Visit https://visible.example/ or //visible2.example for more, and www.visible3.example.</p>
  <pre>&lt;script src="https://escaped.example/x.js"&gt;&lt;/script&gt;</pre>
  <a href="https://link.example/newsletter">Subscribe</a>
  <form action="https://form.example/submit"></form>
  <img src="static/images/logo.png" alt="https://alt.example/">
  <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
  <iframe src="about:blank"></iframe>
  <q cite="https://cite.example/quote">quoted</q>
</body>
</html>
"""


def test_html_negatives(tmp_path):
    (tmp_path / "page.html").write_text(NEGATIVE_HTML)
    assert find_external_urls(tmp_path) == []


def test_links_are_reported_only_when_asked(tmp_path):
    (tmp_path / "page.html").write_text(NEGATIVE_HTML)
    links = scan_external_references(tmp_path, include_links=True)
    assert {r.url for r in links} == {
        "https://canonical.example/page",
        "https://feed.example/rss",
        "https://link.example/newsletter",
        "https://form.example/submit",
    }
    assert not any(r.fetched for r in links)


JS_POSITIVES = """
fetch("https://fetch.example/a");
xhr.open("POST", '//xhr.example/b');
import lib from "https://esm.example/m.js";
export { x } from "https://reexport.example/x.js";
const mod = await import("https://dynamic.example/m");
importScripts("https://worker-import.example/w.js");
new Worker("https://worker.example/w");
new WebSocket("wss://socket.example/live");
new EventSource("https://sse.example/stream");
navigator.sendBeacon("https://beacon.example/collect", data);
navigator.serviceWorker.register("https://sw.example/sw");
pixel.src = "https://pixel.example/p?id=1";
link.href = "https://stylesheet.example/s";
window.location = "https://redirect.example/";
location.replace("https://replace.example/");
el.setAttribute("src", "https://setattr.example/s");
$.ajax({url: "https://ajax.example/q", type: "GET"});
$.getScript("https://getscript.example/s");
var config = {"src": "https://configsrc.example/s"};
(function(i,s,o,g,r,a,m){a=s.createElement(o);a.async=1;a.src=g;m=s.getElementsByTagName(o)[0];
m.parentNode.insertBefore(a,m)})(window,document,'script','https://www.google-analytics.com/analytics.js','ga');
var escaped = "https:\\/\\/escaped.example\\/lib.js";
document.body.innerHTML = '<img src="https://innerhtml.example/i.png">';
el.style.backgroundImage = "url('https://jscss.example/bg.png')";
fetch(`https://template.example/${path}`);
fetch("https://" + host + "/concat");
"""


def test_js_positives():
    assert urls(JS_POSITIVES, "js") == {
        "https://fetch.example/a",
        "//xhr.example/b",
        "https://esm.example/m.js",
        "https://reexport.example/x.js",
        "https://dynamic.example/m",
        "https://worker-import.example/w.js",
        "https://worker.example/w",
        "wss://socket.example/live",
        "https://sse.example/stream",
        "https://beacon.example/collect",
        "https://sw.example/sw",
        "https://pixel.example/p?id=1",
        "https://stylesheet.example/s",
        "https://redirect.example/",
        "https://replace.example/",
        "https://setattr.example/s",
        "https://ajax.example/q",
        "https://getscript.example/s",
        "https://configsrc.example/s",
        "https://www.google-analytics.com/analytics.js",
        "https://escaped.example/lib.js",
        "https://innerhtml.example/i.png",
        "https://jscss.example/bg.png",
        "https://template.example/${path}",
        "https://...",
    }


JS_NEGATIVES = """/*!
 * jQuery v3.7.1 | (c) OpenJS Foundation and other contributors | jquery.org/license
 * https://licence.example/LICENSE
 */
// https://linecomment.example/
throw new TypeError("Bootstrap's tooltips require Popper.js (https://popper.js.org/)");
console.warn("Deprecated, see https://docs.example/migrate");
var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
svg.setAttributeNS("http://www.w3.org/2000/xmlns/", "xmlns:xlink", "http://www.w3.org/1999/xlink");
var spec = {$schema: "https://vega.github.io/schema/vega/v5.json"};
if (url === "https://compared.example/") {}
if (url.startsWith("https://prefix.example/")) {}
var stripped = url.replace("https://old.example", "");
var re = /["'](https?:)?\\/\\/re.example["']/g;
var editor = options.editorUrl ?? "https://editor.example/";
el.setAttribute("title", "https://title.example/");
fetch("static/data.json"); fetch("http://localhost:8080/api");
var tpl = `Read https://tpl-prose.example/ first`;
//# sourceMappingURL=https://sourcemap.example/app.js.map
"""


def test_js_negatives():
    assert urls(JS_NEGATIVES, "js") == set()


def test_js_regex_and_division_do_not_confuse_the_tokenizer():
    code = 'var a = b / 2 / c; var r = /"/; fetch("https://after.example/x");'
    assert urls(code, "js") == {"https://after.example/x"}
    code = 'var r = /\'/; x = y /z/ w; fetch("https://after2.example/x");'
    assert urls(code, "js") == {"https://after2.example/x"}


def test_css_scan():
    css = """/*! Font Awesome https://fontawesome.com/license */
@import url("https://import1.example/a.css");
@import 'https://import2.example/b.css' screen;
@namespace url(http://www.w3.org/1999/xhtml);
.a { background: url(https://bg.example/a.png) no-repeat; }
.b { background: url( "//bg2.example/b.png" ); }
.c { background: url(../webfonts/fa-solid-900.woff2); }
.d { background-image: url("data:image/svg+xml,%3csvg xmlns='http://www.w3.org/2000/svg'/%3e"); }
"""
    hits = scan_text(css, "css")
    assert {h.url for h in hits} == {
        "https://import1.example/a.css",
        "https://import2.example/b.css",
        "https://bg.example/a.png",
        "//bg2.example/b.png",
    }
    assert sorted(css.count("\n", 0, h.offset) + 1 for h in hits) == [2, 3, 5, 6]


def test_folder_scan_reads_html_css_js_only(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.css").write_text("\n\n.x{background:url(https://css.example/x.png)}")
    (tmp_path / "b.js").write_text('fetch("https://js.example/y")')
    (tmp_path / "notes.txt").write_text('<script src="https://txt.example/z.js"></script>')
    (tmp_path / "data.json").write_text('{"url": "https://json.example/"}')
    assert find_external_urls(tmp_path) == [
        (tmp_path / "b.js", 1, "https://js.example/y"),
        (tmp_path / "sub" / "a.css", 3, "https://css.example/x.png"),
    ]
    assert find_external_urls(tmp_path / "b.js") == [(tmp_path / "b.js", 1, "https://js.example/y")]


def test_vendored_assets_request_nothing():
    assert find_external_urls(ASSETS, include_links=True) == []
