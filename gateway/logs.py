"""The log: lines of text (the default), or with `[log] format = "json"` one JSON object a
line — time, level, logger, message, and the inbound id, outbound id, record id and
Message-ID of what the line is about when it names one — for a log shipper to index."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from config.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT_FIELDS = ("inbound_id", "outbound_id", "record_id", "message_id")  # passed as extra=


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {"at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                                   "level": record.levelname.lower(), "logger": record.name,
                                   "message": record.getMessage(), "process": record.process}
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(settings: Settings | None, verbose: bool = False) -> None:
    """Set up the root logger once per process (serve's children call it too)."""
    level = logging.INFO if verbose else getattr(logging, (settings.log.level if settings else "warning").upper(),
                                                 logging.WARNING)
    handler = logging.StreamHandler()
    json_lines = settings is not None and settings.log.format == "json"
    handler.setFormatter(JsonLines() if json_lines else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
