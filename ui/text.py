"""The one place that turns visitor-made strings (class, file and upload names, messages that
quote them) into text for Markdown: shown literally, never as HTML, links or images."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime

MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")
HTML_SPECIAL = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}


def plain(text: object, limit: int = 200) -> str:
    """One line of printable text: control and format characters dropped, at most `limit` long."""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in str(text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def md(text: object, limit: int = 200) -> str:
    """Visitor-made text, escaped for Markdown (and the HTML it becomes)."""
    escaped = MARKDOWN_SPECIAL.sub(r"\\\1", plain(text, limit))
    return "".join(HTML_SPECIAL.get(ch, ch) for ch in escaped)


def md_list(items, limit: int = 60) -> str:
    return ", ".join(md(item, limit) for item in items)


def readable_time(iso: str | None) -> str:
    """"2026-11-27T14:05:09+00:00" -> "27 Nov 2026, 14:05 UTC"."""
    try:
        moment = datetime.fromisoformat(iso or "").astimezone(UTC)
    except ValueError:
        return "an unknown time"
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC"
