"""How `catalog serve` runs the app: in this process, or in N worker processes sharing one socket.

Every process accepts ingest on its own (each has its writer and its group commit: the log takes
concurrent appenders, catalog/ingest/writer.py) and each runs a projector thread that stands by unless
it wins the election (catalog/ingest/projector.py). So workers add accepting throughput — a single
process is CPU-bound at about 0.3 ms of CPU a single-event request — and never a second projector.

uvicorn starts workers as fresh interpreters that import the app by name (`worker_app`), so the parent,
which resolved the settings and migrated the database, hands both down through the environment."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from catalog.config import load_settings
from catalog.memory import tune_garbage_collector

if TYPE_CHECKING:
    from fastapi import FastAPI

    from catalog.config import Settings

# The database URL the workers serve with: the parent resolved it (for the embedded PostgreSQL it is
# the service role's URL on a server the parent started) and migrated it; workers never migrate.
SERVICE_URL_ENV = "CATALOG_SERVE_SERVICE_URL"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_SERVE_OPTIONS: dict[str, Any] = {"log_config": None, "access_log": False, "timeout_graceful_shutdown": 10}


def serve(settings: Settings, service_url: str) -> None:
    """Serve until stopped (Ctrl-C, SIGTERM); with `settings.workers` > 1 uvicorn supervises the
    workers and restarts one that dies."""
    import uvicorn

    if settings.workers <= 1:
        uvicorn.run(_app(settings, service_url), host=settings.host, port=settings.port, **_SERVE_OPTIONS)
        return
    # What the command line set must reach the workers, which read the environment afresh.
    os.environ["CATALOG_HOME"] = str(settings.home)
    if settings.database_url:
        os.environ["CATALOG_DATABASE_URL"] = settings.database_url
    os.environ[SERVICE_URL_ENV] = service_url
    uvicorn.run(
        "catalog.serving:worker_app",
        factory=True,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        **_SERVE_OPTIONS,
    )


def worker_app() -> FastAPI:
    """One worker's app (uvicorn calls this in each worker process)."""
    from catalog.logs import configure_logging

    _exit_with_the_supervisor()
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return _app(settings, os.environ[SERVICE_URL_ENV])


def _exit_with_the_supervisor() -> None:
    """A worker outliving its supervisor (killed with -9, by the OOM killer) would go on serving unwatched,
    and never stop with the service: on Linux, ask the kernel for SIGTERM (a graceful stop) when the
    parent dies, and stop at once if it already has (PR_SET_PDEATHSIG; nothing elsewhere)."""
    import multiprocessing

    supervisor = multiprocessing.parent_process()  # recorded when it spawned us: not "whoever is parent now"
    if supervisor is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return  # not worth failing the worker for
    if os.getppid() != supervisor.pid:  # it died before the request took effect (even while we started)
        os.kill(os.getpid(), signal.SIGTERM)


def _app(settings: Settings, service_url: str) -> FastAPI:
    """The app, built once everything it needs is loaded (then garbage collection is tuned for serving)."""
    from catalog.app import create_app

    app = create_app(settings, service_url)
    tune_garbage_collector()
    return app
