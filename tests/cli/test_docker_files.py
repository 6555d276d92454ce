"""docker-compose.yml and the Dockerfile (Docker itself is not available where the tests run): every
CATALOG_* variable they set is a setting the service reads, nothing is installed when a container starts,
and nothing — state, signing keys — is written into the checkout."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from catalog.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {name.upper() for name in Settings.model_fields}


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with backslash continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in _dockerfile_instructions():
        if instruction == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _catalog_variables(environment: dict[str, Any] | list[str]) -> set[str]:
    names = environment if isinstance(environment, list) else list(environment)
    return {n.split("=", 1)[0] for n in names if n.startswith("CATALOG_")}


def test_every_catalog_variable_set_is_a_setting() -> None:
    compose_vars: set[str] = set()
    for service in _compose()["services"].values():
        compose_vars |= _catalog_variables(service.get("environment", {}))
    dockerfile_vars = _catalog_variables(list(_dockerfile_env()))
    assert compose_vars
    assert dockerfile_vars
    assert compose_vars - {f"CATALOG_{s}" for s in SETTINGS} == set()
    assert dockerfile_vars - {f"CATALOG_{s}" for s in SETTINGS} == set()


def test_nothing_is_installed_when_the_container_starts() -> None:
    service = _compose()["services"]["catalog"]
    assert "build" in service, "the catalog service runs the image built from the Dockerfile"
    started = " ".join(str(service.get(k, "")) for k in ("command", "entrypoint"))
    starts = [
        args for instruction, args in _dockerfile_instructions() if instruction in ("CMD", "ENTRYPOINT")
    ]
    for command in [started, *starts]:
        assert "pip" not in command, command
        assert "install" not in command, command
    assert any("pip install" in args for i, args in _dockerfile_instructions() if i == "RUN")
    # The runtime dependencies only: the dev extras stay out of the image.
    assert not any("[dev]" in args for i, args in _dockerfile_instructions() if i == "RUN")


def test_no_state_and_no_signing_key_in_the_checkout() -> None:
    compose = _compose()
    service = compose["services"]["catalog"]
    home = _dockerfile_env()["CATALOG_HOME"]
    mounts = [str(v) for v in service.get("volumes", [])]
    # No bind mount of the checkout (or anything under it): only named volumes.
    for mount in mounts:
        source = mount.split(":", 1)[0]
        assert not source.startswith((".", "/")), f"bind mount {mount!r}"
        assert source in compose.get("volumes", {}), f"{source!r} is not a named volume"
    assert any(m.split(":")[1] == home for m in mounts), "CATALOG_HOME lives in a named volume"
    assert not home.startswith("/app"), "CATALOG_HOME is outside the copied source"
    # Without a key encryption key the service would generate a development one into CATALOG_HOME.
    kek = service["environment"]["CATALOG_KEY_ENCRYPTION_KEY"]
    assert kek.startswith("${CATALOG_KEY_ENCRYPTION_KEY:?"), "required from the operator, not generated"
    # The container runs as a user, not root.
    assert any(i == "USER" and args not in ("root", "0") for i, args in _dockerfile_instructions())
