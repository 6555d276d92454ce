"""Service settings: one pydantic-settings class, read once from CATALOG_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
DEFAULT_SERVICE_ROLE = "catalog_app"


class Settings(BaseSettings):
    """Everything the service reads from its environment; passed explicitly into the app factory."""

    model_config = SettingsConfigDict(env_prefix="CATALOG_", env_file=None, extra="ignore")

    home: Path = Field(
        Path(".catalog"), description="Local state: the embedded PostgreSQL data directory, logs."
    )
    database_url: str | None = Field(
        None,
        description="External PostgreSQL (postgresql://user@host:5432/db). Unset: start the embedded one.",
    )
    migration_database_url: str | None = Field(
        None,
        description="The schema owner's connection, used only to migrate (postgresql://owner@host/db). "
        "Unset: migrations use database_url. The service itself always connects with database_url.",
    )
    read_database_url: str | None = Field(
        None,
        description="A streaming replica of database_url, as the same service role. Set: REST GETs, GraphQL "
        "queries and exports read there; writes and every access decision (keys, grants) stay on the "
        "primary. Unreachable: reads fall back to the primary (catalog/db/replica.py).",
    )
    read_your_writes_wait_seconds: float = Field(
        2.0,
        ge=0,
        description="How long a read carrying Catalog-LSN waits for the replica to replay that far before "
        "the primary serves it instead.",
    )
    replica_retry_seconds: float = Field(
        1.0, gt=0, description="After a failed connect to the replica, how long reads go to the primary."
    )
    service_role: str = Field(
        DEFAULT_SERVICE_ROLE,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="The role the service runs as: migrations grant it what it needs and no more (it may "
        "append to the audit trail, never rewrite it). The embedded server creates it with a password.",
    )
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = Field(
        1,
        ge=1,
        description="`catalog serve` processes accepting on the one port; each takes a database pool "
        "(`pool_size`), one of them projects. More than the cores seldom helps.",
    )
    admin_token: SecretStr | None = Field(None, description="Bootstrap admin API key (how operators start).")
    metrics_token: SecretStr | None = Field(
        None,
        description="A bearer token that may read /metrics and nothing else (for a Prometheus scraper); "
        "admin and auditor keys may read /metrics too.",
    )
    metrics_cache_seconds: float = Field(
        5.0, ge=0, description="How long /metrics reuses its database-derived gauges (open findings)."
    )
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    pool_size: int = 10
    # Request body limits, checked against Content-Length before a byte is read and while a chunked
    # body streams in (catalog/api/limits.py): ingest (compressed and decompressed), batch ingest,
    # POST /graphql, and every other body (grants, decisions, waivers, tags).
    max_body_bytes: int = 8 * MiB
    max_batch_bytes: int = 64 * MiB
    graphql_max_body_bytes: int = Field(1 * MiB, gt=0, description="Largest POST /graphql body (413 above).")
    max_json_body_bytes: int = Field(1 * MiB, gt=0, description="Largest body of any other endpoint.")
    max_batch_events: int = 50_000
    # Concurrent single-event POSTs are coalesced into one transaction of at most this many events
    # (group commit): one writer per process, no row-lock convoys on hot namespace/dataset rows.
    ingest_group_max: int = 256
    # Single-event ingests skip FastAPI's routing and dependency solving (catalog/api/rest/ingest_lane.py):
    # same answers, about a quarter less CPU a request. Off only to rule it out when diagnosing.
    ingest_lane: bool = True
    # Accept on durable append, project behind (catalog/ingest/projector.py).
    ingest_default_wait: Literal["logged", "projected"] = Field(
        "logged",
        description="What an ingest answer waits for when the request does not say (`?wait=`): `logged` "
        "(durably in the event log; projected moments later) or `projected` (also folded into the catalog, "
        "bounded by ingest_wait_seconds).",
    )
    ingest_wait_seconds: float = Field(
        10.0, ge=0, description="The longest an ingest with `?wait=projected` waits for the projector."
    )
    read_wait_seconds: float = Field(
        5.0,
        ge=0,
        description="The longest a request carrying `Catalog-Position` waits for the projector to pass it "
        "(then it is served anyway, with `Catalog-Projected` telling how far the projection is).",
    )
    projector_batch_size: int = Field(
        5000,
        gt=0,
        description="The most events the projector folds per transaction (catalog/ingest/projector.py).",
    )
    projector_enabled: bool = Field(
        True,
        description="Whether this service process may become the projector (one of them is, with failover). "
        "Off: it only accepts, e.g. beside a `catalog projector run --follow` process of its own.",
    )
    projector_process: bool = Field(
        True,
        description="Run this service process's projector in a child process of its own (its own interpreter, "
        "so folding never holds the accepting path's GIL; restarted if it dies). Off: on a thread of the "
        "service process (one process less; acceptance slows while the projector folds).",
    )
    projector_idle: bool = Field(
        False,
        description="Run the projector process, and its PostgreSQL connections when PostgreSQL runs on this "
        "machine, at the idle CPU priority (Linux SCHED_IDLE): it folds only on CPU time no request wants. "
        "Acceptance gains when the CPU is contended, freshness loses (README, 'Accepting goes first'): for "
        "a backfill, or where acceptance matters more than the lag. Off: CATALOG_PROJECTOR_NICE alone.",
    )
    projector_busy_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="While its service process is CPU-bound accepting ingest, the share of the time the "
        "projector process folds (in small steps, pausing between them): acceptance keeps its rate, the lag "
        "grows and drains when the load falls (README, 'Accepting goes first'; Linux only). 1: never pauses.",
    )
    projector_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="The projector process's CPU niceness, and its PostgreSQL connections' when PostgreSQL runs "
        "on this machine: when both want the CPU, accepting goes first. 0: no preference.",
    )
    projector_standby_seconds: float = Field(
        1.0, gt=0, description="How often a process that is not the projector tries to become it (failover)."
    )
    auth_cache_seconds: float = 2.0
    policies_dir: Path | None = Field(
        None, description="products.yaml, rules.yaml, classification.yaml, model.conf, policy.csv."
    )
    # Governance rules evaluated in each ingest batch; off, only `catalog scan` evaluates them.
    findings_incremental: bool = True
    grants_poll_seconds: float = 0.25
    audit_checkpoint_seconds: float = Field(
        60.0,
        description="How often each process signs the audit chain's head when rows follow the last "
        "checkpoint (the longest a cut-off tail can go unnoticed); 0 turns it off.",
    )
    key_encryption_key: SecretStr | None = Field(
        None,
        description="KEK (32 bytes, base64) encrypting the signing keys at rest. Unset: a development KEK is "
        "generated in CATALOG_HOME/signing-kek (0600), with a warning.",
    )

    # GraphQL protection: the largest query /graphql will run (each rejected with a GraphQL error).
    graphql_max_depth: int = 12
    graphql_max_aliases: int = 30
    graphql_max_tokens: int = 4000
    graphql_max_page_size: int = 100
    graphql_max_lineage_depth: int = 20
    graphql_timeout_seconds: float = 10.0


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; keyword overrides win (CLI flags, tests)."""
    values = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**values)  # type: ignore[arg-type]
