"""A Sphinx extension that ships plotly.js with the book, so its interactive figures work offline.

The figures (:func:`green_profiles.report.interactive.html`) carry no copy of plotly.js. At the end of an HTML
build this writes ``_static/plotly.min.js`` from the installed (pinned) plotly package, and every page
holding a plotly ``<div>`` loads that one file: no CDN, one copy for the whole book, and nothing vendored
in git. Listed in ``_config.yml`` under ``sphinx: extra_extensions``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FILENAME = "plotly.min.js"
# What plotly's to_html writes on the <div> of every figure.
MARKER = 'class="plotly-graph-div"'


def setup(app: Any) -> dict[str, Any]:
    """Register the two hooks (Sphinx calls this when the extension is loaded)."""
    import plotly

    app.connect("html-page-context", add_script)
    app.connect("build-finished", write_library)
    return {"version": plotly.__version__, "parallel_read_safe": True, "parallel_write_safe": True}


def add_script(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Load plotly.js on the pages that hold a figure (in the head, before the figures' inline scripts run)."""
    if MARKER in context.get("body", ""):
        app.add_js_file(FILENAME)


def write_library(app: Any, exception: BaseException | None) -> None:
    """Write the installed plotly package's plotly.js into the built book's ``_static/``."""
    if exception is not None or getattr(app.builder, "format", None) != "html":
        return
    from plotly.offline import get_plotlyjs

    target = Path(app.outdir) / "_static" / FILENAME
    target.parent.mkdir(parents=True, exist_ok=True)
    library = get_plotlyjs()
    if not target.is_file() or target.read_text(encoding="utf-8") != library:
        target.write_text(library, encoding="utf-8")
