"""How `catalog serve` runs the app: in this process, or in N worker processes sharing one socket.

Every process accepts ingest on its own (each has its writer and its group commit: the log takes
concurrent appenders, catalog/ingest/writer.py) and each runs a projector process of its own
(catalog/ingest/projector_process.py) that stands by unless it wins the election (catalog/ingest/
projector.py). So workers add accepting throughput — a single process is CPU-bound at about 0.3 ms of
CPU a single-event request — and never a second active projector.

uvicorn starts workers as fresh interpreters that import the app by name (`worker_app`), so the parent,
which resolved the settings and migrated the database, hands both down through the environment."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from catalog.child_processes import exit_with_parent
from catalog.config import load_settings
from catalog.memory import tune_garbage_collector

if TYPE_CHECKING:
    from fastapi import FastAPI

    from catalog.config import Settings

# The database URL the workers serve with: the parent resolved it (for the embedded PostgreSQL it is
# the service role's URL on a server the parent started) and migrated it; workers never migrate.
SERVICE_URL_ENV = "CATALOG_SERVE_SERVICE_URL"

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

    exit_with_parent()  # its supervisor
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return _app(settings, os.environ[SERVICE_URL_ENV])


def _app(settings: Settings, service_url: str) -> FastAPI:
    """The app, built once everything it needs is loaded (then garbage collection is tuned for serving)."""
    from catalog.app import create_app

    app = create_app(settings, service_url)
    tune_garbage_collector()
    return app
