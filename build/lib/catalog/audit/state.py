"""Replay the access changes the chain records and hold them against the tables they describe.

A hash chain only proves that its own rows are untouched. Who may see what lives in other tables —
`grants` (+ `grant_changes`), `api_keys`, the waivers on `findings` (+ `finding_changes`) — and a
superuser can delete or insert rows there without touching the chain. Every service path that changes
those tables appends a chain row in the same transaction (`grant.created`, `grant.revoked`,
`api_key.created`, `api_key.revoked`, `finding.waived`, `finding.unwaived`), so `catalog audit verify`
replays them and compares: a row the chain knows but the table lacks was deleted, a row the table has
but the chain never recorded was inserted behind the service's back, and a field that differs was edited.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.audit.chain import ChainRow

# The chain's action for each change the grants and findings tables record (their own action names).
GRANT_ACTIONS = {"create": "grant.created", "revoke": "grant.revoked"}
WAIVER_ACTIONS = {"waive": "finding.waived", "unwaive": "finding.unwaived"}
KEY_ACTIONS = ("api_key.created", "api_key.revoked")

# Fields of a key's chain row compared with its `api_keys` row (the secret's fingerprint separately).
_KEY_FIELDS = ("name", "role", "product", "expires_at")


def grant_action(change: str) -> str:
    """The chain action of a `grant_changes.action` (an unknown one keeps its own name)."""
    return GRANT_ACTIONS.get(change, f"grant.{change}")


def waiver_action(change: str) -> str:
    """The chain action of a `finding_changes.action`."""
    return WAIVER_ACTIONS.get(change, f"finding.{change}")


def _table_action(action: str, known: dict[str, str]) -> str:
    """Back from a chain action to the history table's own name (the inverse of the two above)."""
    for change, chained in known.items():
        if chained == action:
            return change
    return action.split(".", 1)[1]


def secret_fingerprint(secret_hash: bytes) -> str:
    """What the chain keeps of a key's stored secret hash: enough to see the hash swapped for another
    (taking the key over), nothing that helps to find the secret."""
    return hashlib.sha256(b"catalog-key-fingerprint:" + secret_hash).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    action: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StateMismatch:
    """A table that disagrees with what the chain says happened to it."""

    table: str
    subject: str
    message: str


@dataclass
class StateReplay:
    """Fed every chain row in order (the verify walk); keeps the access changes by subject."""

    grants: dict[int, list[Entry]] = field(default_factory=dict)
    keys: dict[str, list[Entry]] = field(default_factory=dict)
    waivers: dict[int, list[Entry]] = field(default_factory=dict)

    def feed(self, row: ChainRow) -> None:
        kind, _, ident = row.subject.partition(":")
        # Every `grant_changes` / `finding_changes` row is chained by the one function that writes it,
        # whatever its action (a change kind added later included); denials are not changes.
        if row.action.endswith(".denied"):
            return
        if row.action.startswith("grant.") and kind == "grant" and ident.isdigit():
            self.grants.setdefault(int(ident), []).append(self._entry(row))
        elif row.action in KEY_ACTIONS and kind == "api_key":
            self.keys.setdefault(ident, []).append(self._entry(row))
        elif row.action.startswith("finding.") and kind == "finding" and ident.isdigit():
            self.waivers.setdefault(int(ident), []).append(self._entry(row))

    @staticmethod
    def _entry(row: ChainRow) -> Entry:
        details = orjson.loads(row.details_json)
        return Entry(row.seq, row.action, details if isinstance(details, dict) else {})


def _same(table_value: Any, logged: Any) -> bool:
    if isinstance(table_value, dt.datetime):
        if not isinstance(logged, str):
            return False
        try:
            return dt.datetime.fromisoformat(logged) == table_value
        except ValueError:
            return False
    return bool(table_value == logged)


def _differences(row: dict[str, Any], logged: dict[str, Any], fields: list[str]) -> list[str]:
    return [
        f"{name} is {row[name]!r} in the table, {logged.get(name)!r} in the log"
        for name in fields
        if not _same(row[name], logged.get(name))
    ]


def _changes(
    table: str, subject: str, in_table: Counter[tuple[int, str]], in_chain: Counter[tuple[int, str]]
) -> list[StateMismatch]:
    """The history tables (`grant_changes`, `finding_changes`) row for row against the chain."""
    out: list[StateMismatch] = []
    for key in sorted(in_chain.keys() | in_table.keys()):
        logged, stored = in_chain[key], in_table[key]
        if logged != stored:
            what = "deleted" if stored < logged else "inserted outside the service"
            out.append(
                StateMismatch(
                    table,
                    f"{subject}:{key[0]}",
                    f"{table} holds {stored} '{key[1]}' row(s) for {subject} {key[0]}, the audit log "
                    f"{logged}: rows were {what}",
                )
            )
    return out


async def cross_check(conn: AsyncConnection, replay: StateReplay) -> list[StateMismatch]:
    """Every disagreement between the replayed chain and the grants, keys and waivers tables."""
    return [
        *(await _check_grants(conn, replay)),
        *(await _check_keys(conn, replay)),
        *(await _check_waivers(conn, replay)),
    ]


async def _check_grants(conn: AsyncConnection, replay: StateReplay) -> list[StateMismatch]:
    out: list[StateMismatch] = []
    rows = {r["id"]: dict(r) for r in (await conn.execute(text("SELECT * FROM grants"))).mappings()}
    for grant_id, row in sorted(rows.items()):
        entries = replay.grants.get(grant_id)
        if not entries:
            out.append(
                StateMismatch(
                    "grants",
                    f"grant:{grant_id}",
                    f"grant {grant_id} ({row['grantee_product']} may read {row['grantor_product']}'s "
                    f"{row['scope']} {row['namespace']}/{row['name'] or '*'}) is not in the audit log: it "
                    "was inserted outside the service",
                )
            )
            continue
        last = entries[-1]
        # Whatever columns the grant row has (and the chain row recorded) must agree.
        compared = sorted(k for k in last.details if k in row and k != "id")
        diff = _differences(row, last.details, compared)
        if diff:
            out.append(
                StateMismatch(
                    "grants",
                    f"grant:{grant_id}",
                    f"grant {grant_id} differs from audit row {last.seq}: {'; '.join(diff)}",
                )
            )
    for grant_id in sorted(replay.grants.keys() - rows.keys()):
        first = replay.grants[grant_id][0]
        out.append(
            StateMismatch(
                "grants",
                f"grant:{grant_id}",
                f"grant {grant_id} (audit row {first.seq}) is missing from the grants table: it was deleted",
            )
        )
    in_chain = Counter(
        (grant_id, _table_action(e.action, GRANT_ACTIONS))
        for grant_id, entries in replay.grants.items()
        for e in entries
    )
    in_table = Counter(
        (r.grant_id, r.action) for r in await conn.execute(text("SELECT grant_id, action FROM grant_changes"))
    )
    return out + _changes("grant_changes", "grant", in_table, in_chain)


async def _check_keys(conn: AsyncConnection, replay: StateReplay) -> list[StateMismatch]:
    out: list[StateMismatch] = []
    rows = {
        r["key_id"]: dict(r)
        for r in (
            await conn.execute(
                text("SELECT key_id, name, role, product, expires_at, revoked_at, secret_hash FROM api_keys")
            )
        ).mappings()
    }
    for key_id, row in sorted(rows.items()):
        entries = replay.keys.get(key_id, [])
        created = next((e for e in entries if e.action == "api_key.created"), None)
        if created is None:
            out.append(
                StateMismatch(
                    "api_keys",
                    f"api_key:{key_id}",
                    f"api key {key_id} ({row['role']}, product {row['product'] or '-'}) is not in the audit "
                    "log: it was inserted outside the service",
                )
            )
            continue
        diff = _differences(row, created.details, list(_KEY_FIELDS))
        logged_fingerprint = created.details.get("secret_fingerprint")
        if logged_fingerprint is not None and logged_fingerprint != secret_fingerprint(
            bytes(row["secret_hash"])
        ):
            diff.append("its secret hash was replaced")
        revoked_in_log = any(e.action == "api_key.revoked" for e in entries)
        if revoked_in_log != (row["revoked_at"] is not None):
            diff.append(
                "it is live in the table but revoked in the log"
                if revoked_in_log
                else "it is revoked in the table but the log never revoked it"
            )
        if diff:
            out.append(
                StateMismatch(
                    "api_keys",
                    f"api_key:{key_id}",
                    f"api key {key_id} differs from audit row {created.seq}: {'; '.join(diff)}",
                )
            )
    for key_id in sorted(replay.keys.keys() - rows.keys()):
        first = replay.keys[key_id][0]
        out.append(
            StateMismatch(
                "api_keys",
                f"api_key:{key_id}",
                f"api key {key_id} (audit row {first.seq}) is missing from api_keys: it was deleted",
            )
        )
    return out


def _last_waiver_change(entries: list[Entry]) -> Entry | None:
    return next((e for e in reversed(entries) if e.action in WAIVER_ACTIONS.values()), None)


async def _check_waivers(conn: AsyncConnection, replay: StateReplay) -> list[StateMismatch]:
    out: list[StateMismatch] = []
    waived = {
        r["id"]: dict(r)
        for r in (
            await conn.execute(
                text(
                    "SELECT id, waived_by, waiver_reason, waived_until FROM findings WHERE status = 'waived'"
                )
            )
        ).mappings()
    }
    for finding_id, row in sorted(waived.items()):
        last = _last_waiver_change(replay.waivers.get(finding_id, []))
        if last is None or last.action != WAIVER_ACTIONS["waive"]:
            out.append(
                StateMismatch(
                    "findings",
                    f"finding:{finding_id}",
                    f"finding {finding_id} is waived but the audit log has no live waiver for it: the waiver "
                    "was set outside the service",
                )
            )
            continue
        logged = {
            "waived_by": last.details.get("actor"),
            "waiver_reason": last.details.get("reason"),
            "waived_until": last.details.get("until"),
        }
        diff = _differences(row, logged, ["waived_by", "waiver_reason", "waived_until"])
        if diff:
            out.append(
                StateMismatch(
                    "findings",
                    f"finding:{finding_id}",
                    f"the waiver of finding {finding_id} differs from audit row {last.seq}: {'; '.join(diff)}",
                )
            )
    for finding_id, entries in sorted(replay.waivers.items()):
        final = _last_waiver_change(entries)
        if final is not None and final.action == WAIVER_ACTIONS["waive"] and finding_id not in waived:
            out.append(
                StateMismatch(
                    "findings",
                    f"finding:{finding_id}",
                    f"finding {finding_id} was waived (audit row {final.seq}) but is no longer waived "
                    "and the log never lifted the waiver: it was removed outside the service",
                )
            )
    in_chain = Counter(
        (finding_id, _table_action(e.action, WAIVER_ACTIONS))
        for finding_id, entries in replay.waivers.items()
        for e in entries
    )
    in_table = Counter(
        (r.finding_id, r.action)
        for r in await conn.execute(text("SELECT finding_id, action FROM finding_changes"))
    )
    return out + _changes("finding_changes", "finding", in_table, in_chain)
