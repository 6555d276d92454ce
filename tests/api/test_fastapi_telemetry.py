"""FastAPI's own OpenTelemetry instrumentation is decided when the app is built: off when no OpenTelemetry
provider is set up (it would otherwise ask on every request), kept when one is, or when FastAPI is told
to configure it from the environment."""

from __future__ import annotations

import pytest

from catalog.app import create_app, fastapi_telemetry
from catalog.config import Settings


def test_off_without_opentelemetry(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FASTAPI_OTEL_AUTO_CONFIGURE", "OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    assert fastapi_telemetry() == {"tracing": False, "metrics": False, "logs": False}
    app = create_app(settings, "postgresql://unused@127.0.0.1/unused")
    assert app._native_telemetry.enabled() is False


def test_kept_when_fastapi_configures_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    assert fastapi_telemetry() == {}
