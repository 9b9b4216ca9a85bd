"""The log format of LogFlow's own loggers, on stderr.

The CLI's commands and the helper processes they start (the embedded processor's prepare helper)
set it up the same way, so their lines interleave in one form. uvicorn keeps its own format for
its ``uvicorn.*`` lines.
"""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | int = "INFO") -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
