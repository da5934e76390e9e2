"""Getting panels and tables out of the app: PNG, SVG, CSV and Markdown.

PNG goes through ``QWidget.grab`` rather than pyqtgraph's ImageExporter so that
the labels, banners and thumbnails around a plot are in the picture exactly as
the person saw them.  SVG is pyqtgraph's exporter, so it covers the plots only
(Qt labels are not vector items).  Tables are written with the csv module and
a small Markdown writer, so a comparison pastes straight into a report.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence


def _ensure_parent(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def export_widget_png(widget, path: str | Path) -> None:
    path = _ensure_parent(path)
    if not widget.grab().save(str(path), "PNG"):
        raise OSError(f"Could not write the picture to {path}; check that the folder is writable.")


def _tolerant_correct_coordinates(original):
    """pyqtgraph 0.14's SVG exporter parses path data as "x,y" pairs and fails on the closing
    "Z" that Qt 6.8+ writes (pyqtgraph issue #3495, fixed upstream after 0.14): take the Z off
    before it parses, put it back after."""

    def correct(node, defs, item, options):
        marked = []
        for ch in node.getElementsByTagName("path"):
            d = ch.getAttribute("d").strip()
            tokens = d.split()
            if any(t in ("Z", "z") for t in tokens):
                ch.setAttribute("d", " ".join(t for t in tokens if t not in ("Z", "z")))
                marked.append(ch)
        original(node, defs, item, options)
        for ch in marked:
            ch.setAttribute("d", ch.getAttribute("d").strip() + " Z")

    return correct


def export_item_svg(item, path: str | Path) -> None:
    """``item``: a pyqtgraph PlotItem, GraphicsLayout or scene."""
    import sys

    import pyqtgraph.exporters as exporters

    path = _ensure_parent(path)
    module = sys.modules[exporters.SVGExporter.__module__]
    original = module.correctCoordinates
    module.correctCoordinates = _tolerant_correct_coordinates(original)
    try:
        exporters.SVGExporter(item).export(str(path))
    finally:
        module.correctCoordinates = original
    if not path.exists() or path.stat().st_size == 0:
        raise OSError(f"Could not write the SVG to {path}.")


def format_cell(value: Any) -> str:
    """Numbers as people read them in a table: 4 significant digits, blanks for missing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_cell(v) for v in value)
    return str(value)


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Full precision (repr of floats), unlike the Markdown view: CSV is for further analysis."""
    path = _ensure_parent(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        if header:
            writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v for v in row])


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_to_markdown(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = [_md_escape(format_cell(h)) for h in header]
    body = [[_md_escape(format_cell(v)) for v in row] for row in rows]
    width = max([len(head)] + [len(r) for r in body]) if (head or body) else 0
    head += [""] * (width - len(head))
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * width) + "|"]
    for r in body:
        r = r + [""] * (width - len(r))
        lines.append("| " + " | ".join(r) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    path = _ensure_parent(path)
    text = (f"## {title}\n\n" if title else "") + table_to_markdown(header, rows)
    path.write_text(text, encoding="utf-8")


def table_widget_contents(table) -> tuple[list[str], list[list[str]]]:
    """Header and cell texts of a QTableWidget, as displayed (vertical header first, if any)."""
    cols = table.columnCount()
    header = []
    for c in range(cols):
        item = table.horizontalHeaderItem(c)
        header.append(item.text() if item is not None else "")
    vertical = [table.verticalHeaderItem(r) for r in range(table.rowCount())]
    has_vertical = any(v is not None for v in vertical)
    if has_vertical:
        header = [""] + header
    rows = []
    for r in range(table.rowCount()):
        row = [vertical[r].text() if vertical[r] is not None else ""] if has_vertical else []
        for c in range(cols):
            item = table.item(r, c)
            row.append(item.text() if item is not None else "")
        rows.append(row)
    return header, rows
