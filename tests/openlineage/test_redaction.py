"""Secret redaction: what is masked, what must not be (lineage identity, look-alikes), and that nothing leaks."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from catalog.openlineage.events import EventRejected, Limits
from catalog.openlineage.redaction import MASK, REDACTED, is_secret_key, redact, redact_text
from catalog.openlineage.validation import parse_event
from tests.openlineage.test_validation import valid_event

# (free text as a producer might send it, what must be stored)
MASKED_TEXT = [
    ("postgres://user:s3cr3t@host:5432/db", "postgres://user:***@host:5432/db"),
    ("postgresql://user:p@ss@host/db?sslmode=require", "postgresql://user:***@host/db?sslmode=require"),
    ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
    ("mongodb+srv://app:hunter2@cluster0.example.net/db", "mongodb+srv://app:***@cluster0.example.net/db"),
    (
        "jdbc:postgresql://h:5432/db?user=u&password=hunter2&ssl=true",
        "jdbc:postgresql://h:5432/db?user=u&password=***&ssl=true",
    ),
    (
        "jdbc:sqlserver://h:1433;databaseName=d;user=u;Password=hunter2;encrypt=true",
        "jdbc:sqlserver://h:1433;databaseName=d;user=u;Password=***;encrypt=true",
    ),
    ("jdbc:oracle:thin:scott/tiger@dbhost:1521:orcl", "jdbc:oracle:thin:scott/***@dbhost:1521:orcl"),
    (
        "https://acct.blob.core.windows.net/c/f.csv?sv=2020-08-04&sig=abcDEF%2B123%3D&se=2026",
        "https://acct.blob.core.windows.net/c/f.csv?sv=2020-08-04&sig=***&se=2026",
    ),
    ("https://api.example.com/v1?api_key=abc123&q=1", "https://api.example.com/v1?api_key=***&q=1"),
    (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=abc123==;EndpointSuffix=core.windows.net",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=***;EndpointSuffix=core.windows.net",
    ),
    ("CREATE USER bob WITH PASSWORD 'hunter2'", "CREATE USER bob WITH PASSWORD '***'"),
    (
        "ALTER ROLE bob PASSWORD 'it''s-secret' VALID UNTIL 'infinity'",
        "ALTER ROLE bob PASSWORD '***' VALID UNTIL 'infinity'",
    ),
    ("ALTER USER scott IDENTIFIED BY tiger", "ALTER USER scott IDENTIFIED BY ***"),
    (
        "CREATE USER x IDENTIFIED BY 'p4ss' DEFAULT TABLESPACE t",
        "CREATE USER x IDENTIFIED BY '***' DEFAULT TABLESPACE t",
    ),
    (
        "--conf spark.hadoop.fs.s3a.secret.key=abcd1234 job.py",
        "--conf spark.hadoop.fs.s3a.secret.key=*** job.py",
    ),
    ("export API_KEY=abcd1234 && run", "export API_KEY=*** && run"),
    ('{"password": "hunter2", "user": "bob"}', '{"password": "***", "user": "bob"}'),
    ("{'client_secret': 'abc'}", "{'client_secret': '***'}"),
    ("password: hunter2", "password: ***"),
    ("mysql --password hunter2 -h db", "mysql --password *** -h db"),
    ("curl -H 'Authorization: Bearer abcdefghijklmnop0123' x", "curl -H 'Authorization: Bearer ***' x"),
    ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
    ("token was Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "token was Bearer ***"),
    ("aws key AKIAIOSFODNN7EXAMPLE in a log", f"aws key {REDACTED} in a log"),
    ("clone with ghp_abcdefghijklmnopqrstuvwxyz0123456789AB", f"clone with {REDACTED}"),
    ("slack xoxb-123456789012-abcdefghijkl", f"slack {REDACTED}"),
    (
        "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nend",
        f"key:\n{REDACTED}\nend",
    ),
]

# Look-alikes: lineage and SQL that must come out untouched.
UNTOUCHED_TEXT = [
    "SELECT a.token = b.token FROM sessions a JOIN t b USING (id)",
    "SELECT token_count, secret_name FROM users WHERE password_hash IS NOT NULL",
    "SELECT x::text, y::token FROM t WHERE pwd_changed = true",
    "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/integration/airflow",
    "postgres://payments-db-1.internal:5432?sslmode=verify-full",
    "kafka://broker:9092?security.protocol=SASL_SSL",
    "s3://bucket/path/key=value/part-0000.parquet",
    "user@example.com",
    "the bearer of the card",
    "psql --no-password -h db",
    "tokenizer=bert-base",
    "asia-east1",
    "0195d3a4-7b1e-7c6a-9f00-3c2d1e0f4a5b",
    "2024-05-01T12:00:00.123456+10:00",
    "postgres://food_delivery:***@postgres:5432/food_delivery",  # already redacted
]


@pytest.mark.parametrize(("text", "expected"), MASKED_TEXT)
def test_secrets_in_free_text_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize("text", UNTOUCHED_TEXT)
def test_look_alikes_in_free_text_are_left_alone(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize("text", [t for t, _ in MASKED_TEXT])
def test_masking_is_idempotent(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "passwd",
        "pwd",
        "db_password",
        "jdbcPassword",
        "secret",
        "client_secret",
        "Client-Secret",
        "token",
        "access_token",
        "refreshToken",
        "auth_token",
        "api_key",
        "apiKey",
        "x-api-key",
        "private_key",
        "secret_key",
        "access_key",
        "aws_secret_access_key",
        "credentials",
        "Authorization",
        "spark.hadoop.fs.s3a.secret.key",
        "spark.hadoop.fs.s3a.access.key",
        "spark.ssl.keyStorePassword",
        "fs.azure.account.key.acct.blob.core.windows.net",
    ],
)
def test_credential_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "primaryKey",
        "keys",
        "key",
        "tokenizer",
        "sort_key",
        "maxTokens",
        "token_type",
        "secret_name",
        "passwordless",
        "private_key_id",
        "name",
        "namespace",
        "signature",
        "description",
    ],
)
def test_keys_that_only_look_like_credentials(key: str) -> None:
    assert not is_secret_key(key)


def test_credential_members_are_replaced_and_recorded() -> None:
    doc = {
        "conn": {"host": "db", "password": "hunter2", "port": 5432, "Token": 12345, "api_key": None},
        "flags": {"secret": True},
        "tokens": ["a"],
        "credentials": ["k1", {"user": "u", "secret_key": "k2"}],
        "primaryKey": ["id"],
        "tokenizer": "bert",
    }
    redacted, pointers = redact(doc)
    assert redacted["conn"] == {
        "host": "db",
        "password": REDACTED,
        "port": 5432,
        "Token": REDACTED,
        "api_key": None,
    }
    assert redacted["flags"] == {"secret": True}  # a boolean hides nothing
    assert redacted["credentials"] == [REDACTED, {"user": "u", "secret_key": REDACTED}]
    assert redacted["primaryKey"] == ["id"]
    assert redacted["tokenizer"] == "bert"
    assert redacted["tokens"] == ["a"]
    assert sorted(pointers) == [
        "/conn/Token",
        "/conn/password",
        "/credentials/0",
        "/credentials/1/secret_key",
    ]


def test_redact_returns_a_deep_copy_and_leaves_its_input_alone() -> None:
    doc: dict[str, Any] = {"a": {"password": "hunter2", "list": [{"x": 1}]}}
    before = copy.deepcopy(doc)
    redacted, _ = redact(doc)
    assert doc == before
    redacted["a"]["list"][0]["x"] = 2
    assert doc["a"]["list"][0]["x"] == 1


def test_pointers_escape_slashes_and_tildes() -> None:
    _, pointers = redact({"a/b": {"c~d": {"password": "x"}}})
    assert pointers == ["/a~1b/c~0d/password"]


def test_environment_variables_are_masked_by_name() -> None:
    facet = {
        "environmentVariables": [
            {"name": "DB_PASSWORD", "value": "hunter2"},
            {"name": "GITHUB_TOKEN", "value": "gh-value"},
            {"name": "AWS_SECRET_ACCESS_KEY", "value": "aws-value"},
            {"name": "PWD", "value": "/home/app"},
            {"name": "TOKENIZERS_PARALLELISM", "value": "false"},
            {"name": "DATABASE_URL", "value": "postgres://app:hunter3@db/app"},
        ]
    }
    redacted, pointers = redact(facet)
    values = [pair["value"] for pair in redacted["environmentVariables"]]
    assert values == [REDACTED, REDACTED, REDACTED, "/home/app", "false", "postgres://app:***@db/app"]
    assert next(pair["name"] for pair in redacted["environmentVariables"]) == "DB_PASSWORD"
    assert pointers == [f"/environmentVariables/{i}/value" for i in (0, 1, 2, 5)]


def test_identifiers_keep_their_identity_but_not_their_passwords() -> None:
    event = valid_event()
    event["inputs"][0]["namespace"] = "postgres://user:hunter2@host:5432"
    event["inputs"][1]["name"] = "password_resets"
    event["outputs"][0]["name"] = "auth.token=events"  # an odd name, but a name: free-text rules do not apply
    event["job"]["name"] = "rotate_secret_key --token abcdefghijklmnop"
    parsed = parse_event(event)
    assert parsed.inputs[0].namespace == "postgres://user:***@host:5432"
    assert parsed.payload["inputs"][0]["namespace"] == "postgres://user:***@host:5432"
    assert parsed.inputs[1].name == "password_resets"
    assert parsed.outputs[0].name == "auth.token=events"
    assert parsed.job_name == "rotate_secret_key --token abcdefghijklmnop"
    assert parsed.redactions == ("/inputs/0/namespace",)


def test_no_secret_reaches_the_payload() -> None:
    secrets = {
        "userinfo": "pw-userinfo-1",
        "param": "pw-param-2",
        "key": "pw-key-3",
        "env": "pw-env-4",
        "sql": "pw-sql-5",
        "spark": "pw-spark-6",
        "bearer": "pw-bearer-7-abcdefghijklmnop",
        "aws": "AKIAABCDEFGHIJKLMNOP",
        "nested": "pw-nested-8",
    }
    event = valid_event()
    event["inputs"][0]["namespace"] = f"postgres://etl:{secrets['userinfo']}@payments-db:5432"
    event["inputs"][0]["facets"]["dataSource"] = {
        "name": f"postgres://etl:{secrets['userinfo']}@payments-db:5432",
        "uri": f"jdbc:postgresql://payments-db:5432/p?user=etl&password={secrets['param']}",
    }
    event["run"]["facets"]["airflow_connection"] = {"conn": {"login": "etl", "password": secrets["key"]}}
    event["run"]["facets"]["environmentVariables"] = {
        "environmentVariables": [{"name": "PGPASSWORD", "value": secrets["env"]}]
    }
    event["job"]["facets"]["sql"] = {"query": f"CREATE ROLE etl LOGIN PASSWORD '{secrets['sql']}'"}
    event["run"]["facets"]["spark_properties"] = {
        "properties": {"spark.hadoop.fs.s3a.secret.key": secrets["spark"], "spark.app.name": "etl"}
    }
    event["run"]["facets"]["http"] = {"headers": f"Authorization: Bearer {secrets['bearer']}"}
    event["run"]["facets"]["log"] = {
        "lines": [f"using key {secrets['aws']}", {"deep": {"secret": secrets["nested"]}}]
    }

    parsed = parse_event(event)
    stored = orjson.dumps(parsed.payload)
    for name, secret in secrets.items():
        assert secret.encode() not in stored, name
    assert set(parsed.redactions) == {
        "/inputs/0/namespace",
        "/inputs/0/facets/dataSource/name",
        "/inputs/0/facets/dataSource/uri",
        "/run/facets/airflow_connection/conn/password",
        "/run/facets/environmentVariables/environmentVariables/0/value",
        "/job/facets/sql/query",
        "/run/facets/spark_properties/properties/spark.hadoop.fs.s3a.secret.key",
        "/run/facets/http/headers",
        "/run/facets/log/lines/0",
        "/run/facets/log/lines/1/deep/secret",
    }
    # Identity and the rest of lineage survive.
    assert parsed.payload["run"]["facets"]["spark_properties"]["properties"]["spark.app.name"] == "etl"
    assert parsed.payload["inputs"][0]["facets"]["dataSource"]["uri"].endswith("user=etl&password=***")
    assert MASK in parsed.payload["job"]["facets"]["sql"]["query"]


def test_the_same_event_with_different_passwords_has_one_digest() -> None:
    # Masking makes them the same stored event: the dedup key agrees.
    first, second = valid_event(), valid_event()
    first["inputs"][0]["namespace"] = "postgres://u:one@db:5432"
    second["inputs"][0]["namespace"] = "postgres://u:two@db:5432"
    assert parse_event(first).digest == parse_event(second).digest


def test_redact_accepts_any_json_like_value() -> None:
    assert redact("postgres://u:pw@h/db") == ("postgres://u:***@h/db", [""])
    assert redact(["token: abc", 1, None]) == (["token: ***", 1, None], ["/0"])
    assert redact(42) == (42, [])
    marker: Any = object()
    assert redact({"x": marker})[0]["x"] is marker  # not JSON: passed through, not refused


# -- facets seen before (the clean-facet memo) ---------------------------------------------------------


def _with_facets(schema: dict[str, Any], sql: str) -> dict[str, Any]:
    event = valid_event()
    event["inputs"][0]["facets"]["schema"] = schema
    event["job"]["facets"]["sql"] = {"query": sql}
    return event


def test_a_facet_seen_clean_before_is_kept_as_received_and_stored_the_same() -> None:
    schema = {"fields": [{"name": f"memo_col_{i}", "type": "STRING"} for i in range(12)]}
    first = parse_event(_with_facets(copy.deepcopy(schema), "SELECT memo_a FROM memo_b"))
    again = _with_facets(copy.deepcopy(schema), "SELECT memo_a FROM memo_b")
    second = parse_event(again)
    # The second time it is not walked (so not copied): the very object received is in the payload.
    assert second.payload["inputs"][0]["facets"]["schema"] is again["inputs"][0]["facets"]["schema"]
    assert second.payload["job"]["facets"]["sql"] is again["job"]["facets"]["sql"]
    assert second.payload == first.payload
    assert second.digest == first.digest


def test_a_facet_with_a_secret_is_redacted_every_time_it_comes() -> None:
    for _ in range(3):
        event = _with_facets({"fields": []}, "CREATE ROLE memo LOGIN PASSWORD 'memo-hunter2'")
        event["inputs"][0]["facets"]["dataSource"] = {"uri": "postgres://memo:memo-pw@db/x"}
        parsed = parse_event(event)
        stored = orjson.dumps(parsed.payload)
        assert b"memo-hunter2" not in stored
        assert b"memo-pw" not in stored
        assert set(parsed.redactions) == {"/job/facets/sql/query", "/inputs/0/facets/dataSource/uri"}


def test_a_facet_that_differs_by_one_secret_is_not_taken_for_the_clean_one() -> None:
    clean = {"uri": "postgres://memo-db:5432/app?sslmode=require"}
    event = valid_event()
    event["inputs"][0]["facets"]["dataSource"] = dict(clean)
    assert parse_event(event).redactions == ()
    event = valid_event()
    event["inputs"][0]["facets"]["dataSource"] = {"uri": clean["uri"] + "&password=memo-s3cret"}
    parsed = parse_event(event)
    assert parsed.redactions == ("/inputs/0/facets/dataSource/uri",)
    assert b"memo-s3cret" not in orjson.dumps(parsed.payload)


def test_a_facet_with_a_nul_is_sanitised_every_time_it_comes() -> None:
    for _ in range(2):
        event = valid_event()
        event["outputs"][0]["facets"]["documentation"] = {"description": "memo\x00nul", "k\x00": 1}
        parsed = parse_event(event)
        assert parsed.payload["outputs"][0]["facets"]["documentation"] == {
            "description": "memo\ufffdnul",
            "k\ufffd": 1,
        }


def test_limits_still_apply_to_a_facet_seen_clean_under_looser_ones() -> None:
    long_text = "memo-long-" + "x" * 300
    loose = _with_facets({"fields": [{"name": "memo_limit", "description": long_text}]}, "SELECT 2")
    parse_event(loose)
    tight = _with_facets({"fields": [{"name": "memo_limit", "description": long_text}]}, "SELECT 2")
    with pytest.raises(EventRejected) as refused:
        parse_event(tight, limits=Limits(max_string=200))
    assert refused.value.type_ == "too-large"
    deep: dict[str, Any] = {"leaf": "memo-deep"}
    for _ in range(8):
        deep = {"n": deep}
    parse_event(_with_facets(copy.deepcopy(deep), "SELECT 3"))
    with pytest.raises(EventRejected) as refused:
        parse_event(_with_facets(copy.deepcopy(deep), "SELECT 3"), limits=Limits(max_depth=8))
    assert refused.value.type_ == "too-deep"


def test_run_facets_are_walked_every_time() -> None:
    # They name the run and never repeat: not memoised (a copy, never the received object).
    event = valid_event()
    event["run"]["facets"]["nominalTime"] = {"nominalStartTime": "2024-05-01T12:00:00Z"}
    parse_event(copy.deepcopy(event))
    parsed = parse_event(event)
    assert parsed.payload["run"]["facets"]["nominalTime"] is not event["run"]["facets"]["nominalTime"]
    assert parsed.payload["run"]["facets"]["nominalTime"] == event["run"]["facets"]["nominalTime"]
