"""voxflow's own log lines in every flow run's log, at INFO, whatever the environment says.

voxflow's modules log through plain ``logging.getLogger(__name__)`` loggers, under the top-level
packages in :data:`VOXFLOW_LOGGERS`. ``PREFECT_LOGGING_EXTRA_LOGGERS`` can hand them Prefect's
API handler, but it leaves their level unset, so they inherit the root logger's WARNING and
every INFO line (a stage's summary, its progress) is dropped before any handler sees it.
Raising the root level instead would raise every library's, Prefect's HTTP clients included,
and flood the workers' logs; so only voxflow's own loggers are set here.
"""

from __future__ import annotations

import logging

VOXFLOW_LOGGERS = ("flows", "tasks", "blocks", "profiles", "voxflow")
"""The top-level packages whose loggers are voxflow's."""


def show_voxflow_logs() -> None:
    """Send voxflow's INFO lines to the flow run's log (the Prefect UI) and the console.

    Each of voxflow's loggers whose level nobody set gets INFO, and the handlers Prefect gives
    its extra loggers (the API handler), whether or not ``PREFECT_LOGGING_EXTRA_LOGGERS``
    names it. A level an operator's logging configuration set is kept. Calling it again
    changes nothing, so every flow calls it first.
    """
    prefect_extra = logging.getLogger("prefect.extra").handlers
    for name in VOXFLOW_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        for handler in prefect_extra:  # one of each kind, also after Prefect set up again
            if not any(type(own) is type(handler) for own in logger.handlers):
                logger.addHandler(handler)
