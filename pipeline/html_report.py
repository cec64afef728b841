"""A single self-contained HTML page of the report: tables and figures (PNG inlined), no
scripts, no external resources, so it opens from disk in any browser."""

from __future__ import annotations

import base64
import html
import re

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
td.n{text-align:right}th{background:#f3f3f3}img{max-width:100%}p.note{color:#555}"""
# a number, a number with its interval or unit, or a dash: right-aligned; any other text (claims, names) left
_NUMBER = re.compile(r"[-+]?[\d.,]+(e[-+]?\d+)?( ± [\d.,]+)?( ?%| s| points)?|-|n/a")


def render(title: str, intro: str, tables: list[tuple[str, list[str], list[list[str]]]],
           figures: list[tuple[str, bytes]]) -> str:
    """The page: ``tables`` as (heading, header, rows), ``figures`` as (caption, PNG bytes)."""
    parts = [f"<p class='note'>{html.escape(intro)}</p>"]
    for heading, header, rows in tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>" + table_html(header, rows))
    for caption, png in figures:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return document(title, "\n".join(parts))


def document(title: str, body: str) -> str:
    """A whole page around ``body`` (HTML), with the shared style."""
    return "\n".join([f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
                       f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>", body,
                       "</body></html>\n"])


def table_html(header: list[str], rows: list[list[str]]) -> str:
    """A table of plain-text cells (escaped)."""
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>\n"
            + "\n".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
            + "</table>")


def _cell(text: str) -> str:
    kind = " class='n'" if _NUMBER.fullmatch(text.strip()) else ""
    return f"<td{kind}>{html.escape(text)}</td>"


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
