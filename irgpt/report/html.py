"""HTML building blocks for the run report: tables, notes, sections, the page.

Each block is a small Jinja2 template rendered with autoescaping, so every
value that reaches the page from a file is escaped unless a helper is told it
is trusted HTML already (`raw=True`, or the `*_html` arguments, which take the
output of other blocks). The page is one self-contained file: inline CSS,
images as `data:image/png;base64,` URIs, no scripts, fonts or external links.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from jinja2 import Environment
from markupsafe import Markup, escape

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0; color: #1d232a; background: #f5f6f8; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 18px 28px 60px; }
h1 { font-size: 1.7em; margin: 0.4em 0 0.2em; }
h2 { font-size: 1.3em; margin: 0 0 0.6em; padding-bottom: 0.25em; border-bottom: 2px solid #d8dde3; }
h3 { font-size: 1.05em; margin: 1.1em 0 0.4em; color: #37424e; }
section { background: #fff; border: 1px solid #dde2e8; border-radius: 8px; padding: 16px 22px;
          margin: 18px 0; }
nav { font-size: 0.92em; margin: 6px 0 4px; }
nav a { margin-right: 12px; color: #2458a6; text-decoration: none; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 0.9em; }
th, td { border: 1px solid #d5dae0; padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.ref td { color: #5d6873; font-style: italic; background: #fafbfc; }
tr.best td { background: #fff6d6; }
td.sum, th.sum { background: #f1f6ee; font-weight: 600; }
.tables { display: flex; flex-wrap: wrap; gap: 26px; align-items: flex-start; }
.note { border-left: 4px solid #9aa5b1; background: #f4f6f8; padding: 6px 12px; margin: 8px 0; }
.note.notrun { border-color: #c1c7ce; color: #555f69; }
.note.error { border-color: #c62828; background: #fdecea; color: #8e1c1c; }
.note.warn { border-color: #e0a100; background: #fff8e1; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 0.85em; font-weight: 600; }
.badge.done { background: #dcefdc; color: #1f6b25; }
.badge.skipped { background: #eceff2; color: #56616b; }
.badge.failed { background: #fbdada; color: #9b1c1c; }
.badge.other { background: #fff1c9; color: #7a5a00; }
.kv td:first-child { color: #4a5560; white-space: nowrap; }
.headline { display: flex; flex-wrap: wrap; gap: 12px; margin: 10px 0; }
.headline div { background: #eef3fb; border: 1px solid #d3def0; border-radius: 6px; padding: 6px 12px; }
.headline b { display: block; font-size: 1.15em; }
img.plot { max-width: 100%; height: auto; display: block; margin: 8px 0 14px; border: 1px solid #eceff2; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; padding: 10px; overflow-x: auto; font-size: 0.85em; }
code { font-size: 0.92em; background: #f0f2f4; padding: 0 3px; border-radius: 3px; }
details { margin: 8px 0; } summary { cursor: pointer; font-weight: 600; }
.scroll { overflow-x: auto; }
.muted { color: #66717c; font-size: 0.9em; }
"""


_ENV = Environment(autoescape=True, keep_trailing_newline=True)
_T = {name: _ENV.from_string(text) for name, text in {
    "table": "<table><thead><tr>{% for h, c in head %}<th{{ c }}>{{ h }}</th>{% endfor %}</tr></thead><tbody>"
             "{% for rc, cells in body %}<tr{{ rc }}>{% for c, v in cells %}<td{{ c }}>{{ v }}</td>{% endfor %}"
             "</tr>{% endfor %}</tbody></table>",
    "kv": '<table class="kv"><tbody>{% for k, v in pairs %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>'
          "{% endfor %}</tbody></table>",
    "counts": "<div><h3>{{ title }}</h3>{{ table }}</div>",
    "note": '<div class="note {{ kind }}">{{ text }}</div>',
    "badge": '<span class="badge {{ kind }}">{{ status }}</span>',
    "details": "<details{{ \" open\" if open_ else \"\" }}><summary>{{ summary }}</summary>{{ body }}</details>",
    "pre": "<pre>{{ text }}</pre>",
    "img": '<img class="plot" alt="{{ alt }}" src="data:image/png;base64,{{ data }}">',
    "section": '<section id="{{ anchor }}"><h2>{{ title }}</h2>{{ body }}</section>',
    "scroll": '<div class="scroll">{{ body }}</div>',
    "page": '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>'
            "<style>{{ css }}</style></head><body><main><h1>{{ title }}</h1><nav>"
            '{% for a, t in nav %}<a href="#{{ a }}">{{ t }}</a>{% endfor %}</nav>'
            '{% for s in sections %}{{ s }}{% endfor %}<p class="muted">{{ footer }}</p></main></body></html>\n',
}.items()}


def _render(name: str, **values) -> str:
    return str(_T[name].render(**values))


def esc(value) -> str:
    """Text for HTML (quotes too, so it is safe in attributes)."""
    return str(escape("" if value is None else str(value)))


def fmt(value, digits: int = 4) -> str:
    """A cell value as text: numbers to `digits` significant figures, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if 1e3 <= abs(value) < 1e9:
            return f"{value:,.1f}"
        if 100 <= abs(value) < 1e3:
            return f"{value:.2f}"
        return f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, digits) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v, digits)}" for k, v in value.items())
    try:  # numpy scalars
        import numpy as np

        if isinstance(value, np.integer):
            return fmt(int(value), digits)
        if isinstance(value, np.floating):
            return fmt(float(value), digits)
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def _is_num(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table(headers: Sequence[str], rows: Iterable[Sequence], *, num_cols: Iterable[int] = (),
          row_classes: Sequence[str] | None = None, col_classes: dict[int, str] | None = None,
          raw: bool = False) -> str:
    """An HTML table; cells are escaped (`raw=True`: string cells are trusted HTML already).

    Numeric cells are right-aligned; `num_cols` forces that for other columns.
    """
    num_cols = set(num_cols)
    col_classes = col_classes or {}

    def cls(j: int, value=None) -> Markup:
        names = [col_classes[j]] if j in col_classes else []
        if j in num_cols or _is_num(value):
            names.append("num")
        return Markup(' class="{}"').format(" ".join(names)) if names else Markup("")

    head = [(h, cls(j)) for j, h in enumerate(headers)]
    body = []
    for i, row in enumerate(rows):
        rc = Markup(' class="{}"').format(row_classes[i]) if row_classes and row_classes[i] else Markup("")
        body.append((rc, [(cls(j, v), Markup(v) if raw and isinstance(v, str) else fmt(v)) for j, v in enumerate(row)]))
    return _render("table", head=head, body=body)


def kv_table(pairs: Iterable[tuple[str, object]]) -> str:
    """A two-column key / value table."""
    return _render("kv", pairs=[(k, fmt(v)) for k, v in pairs])


def counts_table(title: str, counts: dict, total_label: str = "total") -> str:
    """A `value | rows | share` table for a composition dict."""
    items = [(k, v) for k, v in counts.items() if _is_num(v)]
    total = sum(v for _, v in items) or 0
    rows = [(k, v, f"{100.0 * v / total:.1f}%" if total else "–") for k, v in items]
    rows.append((total_label, total, "100%" if total else "–"))
    return _render("counts", title=title, table=Markup(table([title, "rows", "share"], rows, num_cols=(1, 2))))


def note(text: str, kind: str = "info", *, raw: bool = False) -> str:
    """A boxed note; kind = info | notrun | error | warn (`raw=True`: `text` is trusted HTML)."""
    return _render("note", kind=kind, text=Markup(text) if raw else text)


def badge(status) -> str:
    s = str(status)
    return _render("badge", kind=s if s in ("done", "skipped", "failed") else "other", status=s)


def details(summary: str, body_html: str, open_: bool = False) -> str:
    return _render("details", summary=summary, body=Markup(body_html), open_=open_)


def pre(text: str) -> str:
    return _render("pre", text=text)


def img(png: Path, alt: str) -> str:
    """An <img> holding the PNG itself (base64 data URI)."""
    return _render("img", alt=alt, data=base64.b64encode(Path(png).read_bytes()).decode("ascii"))


def section(anchor: str, title: str, body_html: str) -> str:
    return _render("section", anchor=anchor, title=title, body=Markup(body_html))


def scroll(body_html: str) -> str:
    """Wide content (tables with many columns) in a horizontally scrolling box."""
    return _render("scroll", body=Markup(body_html))


def page(title: str, nav: Sequence[tuple[str, str]], sections: Sequence[str], footer: str = "") -> str:
    return _render("page", title=title, css=Markup(CSS), nav=list(nav), sections=[Markup(x) for x in sections],
                   footer=footer)
