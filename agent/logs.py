"""Logging that journald shows well: syslog priority prefixes and no timestamps of our own."""

from __future__ import annotations

import logging
import os
import sys

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """``<6>gate: message``: journald reads the <N> prefix as the priority and adds its own time."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        name = record.name.removeprefix("edge_agent.").removeprefix("edge_agent")
        text = super().format(record)
        # Continuation lines of a multi-line message keep the priority too.
        return "\n".join(f"<{priority}>{name + ': ' if name else ''}{line}" for line in text.splitlines())


def setup_logging(level: str = "INFO", fmt: str = "auto") -> None:
    journal = fmt == "journal" or (fmt == "auto" and "JOURNAL_STREAM" in os.environ)
    handler = logging.StreamHandler(sys.stderr if journal else sys.stdout)
    if journal:
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
