"""JSON logs (structlog) for every fleet process; a process names itself once at start."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(process: str, level: int = logging.INFO) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    structlog.configure(
        processors=[
            # A processor, not a context variable: threads don't inherit contextvars.
            lambda _logger, _method, event: {"process": process, **event},
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
