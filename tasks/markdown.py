"""Text as the Prefect UI shows it: Markdown that says what it says, and links to runs and files.

The UI renders every string cell of a table artifact as a Markdown document of its own, and a
markdown artifact's tables as Markdown tables, so a value such as ``-`` (voxflow's "none" in a
terminal table) shows as an empty bullet, ``# 2`` as a heading, and a ``|`` in a file name
splits a row. :func:`escape` makes a value literal text; :func:`table_rows` is what every table
artifact passes to ``create_table_artifact``; :func:`run_link` and :func:`file_link` are the
links a cell or a preview shows (the UI renders a link in a table cell as a link).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

EMPTY = "—"
"""What an empty value shows as (never a bare ``-``, which renders as a bullet)."""

_NONE = ("", "-")
"""Values that mean "nothing here": empty, and the ``-`` that terminal tables print."""

_INLINE = re.compile(r"[\\`*_\[\]<>|~]")
"""Characters that start inline markup anywhere in a line (emphasis, code, links, HTML)."""

_BLOCK = re.compile(r"^(\s*)([-+#>=]|\d{1,9}[.)](?=\s|$))")
"""What makes a line a list item, heading, quote or rule when it comes first (a number only
with a space after it: ``1.2.1`` is no list)."""


def escape(text: str) -> str:
    """``text`` as literal Markdown on one line: markup characters backslash-escaped, line
    breaks as spaces (a break would end a table row)."""
    flat = " ".join(text.split("\n")).replace("\r", " ")
    return _BLOCK.sub(_escape_marker, _INLINE.sub(r"\\\g<0>", flat))


def _escape_marker(found: re.Match[str]) -> str:
    indent, marker = found.group(1), found.group(2)
    return f"{indent}{marker[:-1]}\\{marker[-1]}"


def cell(value: Any) -> Any:
    """One table artifact cell: text escaped (:func:`escape`), nothing as :data:`EMPTY`,
    numbers and flags as they are (the UI shows those as plain text)."""
    if value is None or (isinstance(value, str) and value.strip() in _NONE):
        return EMPTY
    return escape(value) if isinstance(value, str) else value


def table_rows(rows: Iterable[Mapping[str, Any]], runs: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Rows for ``create_table_artifact``: every cell through :func:`cell`, and the columns
    named in ``runs`` (flow run ids) as links to their runs (:func:`run_link`)."""
    linked = set(runs)
    return [
        {k: run_link(str(v)) if k in linked and v else cell(v) for k, v in row.items()}
        for row in rows
    ]


def run_link(flow_run_id: str) -> str:
    """A flow run id as a Markdown link to its page in the Prefect UI, or the escaped id where
    no UI is known (``PREFECT_UI_URL`` unset and no API URL to infer it from) or the value is
    not a run id (``subflow``, ``pid 123``)."""
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    if not ui or not _RUN_ID.fullmatch(flow_run_id or ""):
        return cell(flow_run_id)
    return f"[{flow_run_id}]({ui.rstrip('/')}/runs/flow-run/{flow_run_id})"


_RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def file_link(path: str) -> str:
    """A file as a Markdown link: its full path as the text, a ``file://`` URL as the target
    (percent-encoded, so spaces and brackets in a name keep the link whole); a URL such as
    ``s3://...`` links to itself."""
    target = Path(path).as_uri() if Path(path).is_absolute() else path
    return f"[{escape(path)}]({target})"


def lines(items: Iterable[str]) -> str:
    """Markdown lines that stay lines (a hard break after each but the last)."""
    return "  \n".join(items)
