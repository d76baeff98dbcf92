"""``jupyter nbconvert --to loom-html``: an HTML file whose views read with no JavaScript.

A notebook saved with widget state (JupyterLab's default, and what ``nbconvert --execute``
stores) makes nbconvert's HTML exporter draw each view as a widget, which needs the widget
JavaScript from a CDN: offline, behind a proxy, or in a mail attachment, the views come out
empty. Every loom_nb view also carries a static ``text/html`` form of its cell's state; this
exporter drops the widget state so that nbconvert picks that form. Everything else is nbconvert's
own HTML exporter (``--template``, ``--no-input`` and the rest work as usual).
"""

from __future__ import annotations

import copy
from typing import Any

from nbconvert.exporters import HTMLExporter

__all__ = ["StaticHTMLExporter"]


class StaticHTMLExporter(HTMLExporter):
    """nbconvert's HTML exporter, with each widget output drawn from its static HTML form."""

    export_from_notebook = "HTML, static views (loom_nb)"

    def from_notebook_node(  # type: ignore[override]  # HTMLExporter's own signature
            self, nb: Any, resources: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[str, dict[str, Any]]:
        nb = copy.deepcopy(nb)
        nb.metadata.pop("widgets", None)
        return super().from_notebook_node(nb, resources, **kw)
