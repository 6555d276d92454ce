"""`catalog export verify` says what --public-key takes (a PEM file or a key id), in the help and when it
is left out — and names the key the bundle claims, without trusting it."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import orjson
from typer.testing import CliRunner

from catalog.cli import app
from catalog.export.bundle import SIGNATURE

runner = CliRunner()


def flat(text: str) -> str:
    """The output as one line of words (rich draws boxes and wraps help text)."""
    return re.sub(r"[\s│╭╮╰╯─]+", " ", text)


def test_export_help_says_what_verify_needs() -> None:
    helped = runner.invoke(app, ["export", "--help"])
    assert helped.exit_code == 0
    assert "catalog export verify BUNDLE --public-key KEY.pem|KEY_ID" in flat(helped.output)
    verify_help = flat(runner.invoke(app, ["export", "verify", "--help"]).output)
    assert "--public-key" in verify_help
    assert "PEM" in verify_help
    assert "catalog signing list" in verify_help


def test_verify_without_a_key_says_what_to_pass(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.writestr(SIGNATURE, orjson.dumps({"keyId": "ed25519-1a2b3c", "signature": "x"}))
    result = runner.invoke(app, ["export", "verify", str(bundle)])
    assert result.exit_code == 2
    said = flat(result.output)
    assert "Missing option" not in said
    assert "give --public-key: a PEM file" in said
    assert "signing key id" in said
    assert f"catalog export verify {bundle} --public-key ed25519-1a2b3c" in said

    not_a_zip = tmp_path / "not-a-bundle.zip"
    not_a_zip.write_bytes(b"hello")
    result = runner.invoke(app, ["export", "verify", str(not_a_zip)])
    assert result.exit_code == 2
    assert "--public-key KEY_ID" in flat(result.output)
