"""Secret redaction and storage sanitising of JSON documents, in one copying walk.

Secrets in URIs, credential-named members and free text are masked before anything is stored; NUL
characters, which PostgreSQL text/jsonb cannot hold, become U+FFFD.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from typing import Any

import orjson

from catalog.openlineage.events import EventRejected

#: What a credential-named member's value becomes.
REDACTED = "***REDACTED***"
#: What a password / token inside a URI or free text becomes (short, so the URI stays readable).
MASK = "***"
_ALREADY = frozenset({"", MASK, REDACTED})  # values that hold nothing to hide: redaction is idempotent

_NUL = "\x00"
_REPLACEMENT = "\ufffd"

# -- member keys -------------------------------------------------------------------------------------
# Keys are compared lower-cased with "-", "_", "." and spaces removed, so "Client-Secret", "client_secret"
# and "spark.hadoop.fs.s3a.secret.key" all normalise to something below. Exact names first; the suffixes
# catch compound names ("db_password", "jdbcPassword", "spark.ssl.keyStorePassword") without touching
# look-alikes such as "primaryKey", "sort_key", "keys", "tokenizer" or "maxTokens".
_SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "clientsecret",
        "token",
        "accesstoken",
        "refreshtoken",
        "authtoken",
        "apikey",
        "privatekey",
        "secretkey",
        "accesskey",
        "awssecretaccesskey",
        "credential",
        "credentials",
        "authorization",
    }
)
_SECRET_KEY_SUFFIXES = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "secretkey",
    "accesskey",
    "accountkey",
    "credentials",
    "authorization",
)

# What a member's key says about its value. The order matters: the hot loop tests `kind < _KIND_SECRET`
# for the two kinds whose strings may be memoised as clean.
_KIND_PLAIN = 0
_KIND_IDENT = 1  # "namespace" / "name": lineage identity, only URI passwords are masked
_KIND_SECRET = 2  # a credential-named member: its scalar value is replaced wholesale
_KIND_VALUE = 3  # "value": secret when a sibling "name" says so (environment variables)
_KIND_VOLATILE = 4  # run ids and times: checked like any string but never memoised (each one is unique)
_KIND_FACETS = 5  # an object of facets (dataset, input, output and job facets): see _walk_facets
_VOLATILE_KEYS = frozenset({"runId", "eventTime", "nominalStartTime", "nominalEndTime"})
_FACETS_KEYS = frozenset({"facets", "inputFacets", "outputFacets"})


def _normalise_key(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "").replace(".", "").replace(" ", "")


def is_secret_key(key: str) -> bool:
    """Whether an object member named `key` holds a credential (compared case- and separator-insensitively)."""
    norm = _normalise_key(key)
    if norm in _SECRET_KEYS or norm.endswith(_SECRET_KEY_SUFFIXES):
        return True
    # Hadoop's Azure storage key: fs.azure.account.key.<account>.blob.core.windows.net
    return ".account.key." in key.lower()


_ENV_WORDS = re.compile(r"[a-z0-9]+")
_ENV_SECRET_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "apikey",
    "privatekey",
    "accesskey",
    "accountkey",
    "credential",
)
_ENV_SECRET_WORDS = frozenset({"pass", "token", "tokens", "sas", "auth"})


@functools.lru_cache(maxsize=4096)
def is_secret_env_name(name: str) -> bool:
    """Whether an environment variable's name says its value is a credential (DB_PASSWORD, GITHUB_TOKEN, …).

    Word-based rather than key-based: env names are compound, and `PWD`/`OLDPWD` are working directories.
    """
    words = _ENV_WORDS.findall(name.lower())
    joined = "".join(words)
    if joined in {"pwd", "oldpwd"}:
        return False
    if any(part in joined for part in _ENV_SECRET_PARTS) or joined.endswith("token"):
        return True
    return any(word in _ENV_SECRET_WORDS for word in words)


# -- string values -----------------------------------------------------------------------------------
# `scheme://user:password@host`: the password is masked, the user kept (it identifies the connection).
# The password runs to the last "@" before the path, so an unescaped "@" inside it is still covered.
_USERINFO_RE = re.compile(r"(://[^:/?#@\s]*:)([^/?#\s]*)(?=@)")
# Oracle's thin URL carries credentials as user/password@: jdbc:oracle:thin:scott/tiger@host:1521:orcl
_ORACLE_RE = re.compile(r"(?i)(jdbc:oracle:[a-z0-9]+:[^/@:\s]+/)([^@\s]+)(?=@)")
# Credential parameters of URIs (?a=b&c=d), JDBC (;password=x;) and connection strings (AccountKey=…).
_PARAM_RE = re.compile(
    r"(?i)([?&;]\s*(?:password|passwd|pwd|secret|token|access_token|api_key|apikey|sig|signature"
    r"|client_secret|sas|accountkey|sharedaccesssignature|x-amz-signature|x-amz-security-token"
    r"|x-goog-signature)\s*=)([^&;#\s]*)"
)
# key=value / key: value / "key": "value" in free text (SQL, logs, command lines, embedded JSON/YAML).
# An unquoted value after "=" must follow it directly, so SQL such as `a.token = b.token` stays intact;
# "==" is a comparison. ":" counts only when followed by a space or a quote, so "::" casts and URI
# userinfo such as `https://token:x@host` are left to the URI rule. Quantifiers are bounded: no
# pathological backtracking on megabyte strings; the leading lookahead lets the engine skip positions
# that cannot start a keyword (3x faster on long SQL).
_KV_RE = re.compile(
    r"""(?ix)
    (?=[pstac])
    (password|passwd|pwd|passphrase|secret|token|api[_.-]?key|private[_.-]?key|secret[_.-]?key
     |access[_.-]?key|account[_.-]?key|credentials?)
    (["']?
     (?: \s{0,16}=\s{0,16}(?=["']) | =(?![=\s]) | \s{0,16}:(?=[\s"'])\s{0,16} )
    )
    ( "(?:[^"\\\n]|\\.){0,8192}" | '(?:[^'\n]|''){0,8192}' | [^\s,;&"'(){}\[\]<>]{1,8192} )
    """
)
# SQL: CREATE/ALTER ROLE … PASSWORD 'x'; MySQL/Oracle: IDENTIFIED BY 'x' (or an unquoted word).
_SQL_PASSWORD_RE = re.compile(r"(?i)(\bpassword\s{1,16})('(?:[^'\n]|''){0,8192}'|\"[^\"\n]{0,8192}\")")
_IDENTIFIED_RE = re.compile(
    r"(?i)(\bidentified\s{1,16}by\s{1,16}(?:password\s{1,16})?)"
    r"('(?:[^'\n]|''){0,8192}'|\"[^\"\n]{0,8192}\"|[^\s;'\"]{1,8192})"
)
# Command-line flags: --password hunter2, --db-password 'x', --api-key abc (--x=y is covered above).
_FLAG_RE = re.compile(
    r"(?i)(--[\w-]{0,40}?(?:password|passwd|secret|token|api[_-]?key)\s{1,8})"
    r"('[^'\n]{0,8192}'|\"[^\"\n]{0,8192}\"|[^\s'\"-][^\s'\"]{0,8191})"
)
# An HTTP Authorization header written out as text; the scheme word is kept.
_AUTH_RE = re.compile(
    r"(?i)(authorization[\"']?\s{0,16}[:=]\s{0,16}[\"']?(?:(?:basic|bearer|token|digest|negotiate)\s{1,16})?)"
    r"([^\s\"',;]{1,8192})"
)
# A bearer token; 16+ characters so that prose ("the bearer of the card") is left alone.
_BEARER_RE = re.compile(r"(?i)(\bbearer\s{1,16})([A-Za-z0-9\-._~+/]{16,8192}=*)")
# Well-known credential shapes: AWS access key ids, GitHub tokens, Slack tokens.
_TOKEN_RE = re.compile(
    r"\b(?:(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}"
    r"|xox[baprs]-[A-Za-z0-9-]{10,255})\b"
)
_PEM_RE = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY-----.*?(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY-----|\Z)", re.S
)


def _mask_group2(m: re.Match[str]) -> str:
    value = m.group(2)
    if value in _ALREADY:
        return m.group(0)
    return f"{m.group(1)}{MASK}"


def _mask_quoted(m: re.Match[str], group: int) -> str:
    value = m.group(group)
    quote = value[0]
    if quote in "'\"" and len(value) >= 2 and value[-1] == quote:
        inner = value[1:-1]
        if inner in _ALREADY:
            return m.group(0)
        masked = f"{quote}{MASK}{quote}"
    else:
        if value in _ALREADY:
            return m.group(0)
        masked = MASK
    return m.string[m.start(0) : m.start(group)] + masked


def _mask_kv(m: re.Match[str]) -> str:
    return _mask_quoted(m, 3)


def _mask_sql(m: re.Match[str]) -> str:
    return _mask_quoted(m, 2)


def redact_uri(value: str) -> str:
    """Mask the passwords of a URI-like identifier (userinfo, Oracle user/password@, credential params).

    The only rules applied to namespace/name identifiers: anything else would change lineage identity.
    """
    out = value
    if "@" in out:
        if "://" in out:
            out = _USERINFO_RE.sub(_mask_group2, out)
        if "/" in out and "jdbc:oracle:" in out.lower():
            out = _ORACLE_RE.sub(_mask_group2, out)
    if "=" in out:
        out = _PARAM_RE.sub(_mask_group2, out)
    return out


# Characters of UUIDs, timestamps, numbers and hex digests: a string made only of these cannot match any
# rule below (every rule needs "=", "@", a space-separated keyword or a letter outside a-f), so run ids
# and event times skip the scan after one C-level strip.
_INERT_CHARS = "0123456789abcdefABCDEF-:.+TZ"


def redact_text(value: str) -> str:
    """Mask secrets inside any free-text string: URIs, credential parameters, key=value pairs, SQL
    `PASSWORD '…'` / `IDENTIFIED BY …`, Authorization/Bearer values, PEM private keys and well-known
    token shapes. Returns `value` itself when there is nothing to mask."""
    if not value.strip(_INERT_CHARS):
        return value
    low = value.lower()
    # Cheap gates first: every rule needs one of these fragments, and most strings have none.
    if (
        "=" not in value
        and "@" not in value
        and "pass" not in low
        and "pwd" not in low
        and "secret" not in low
        and "token" not in low
        and "key" not in low
        and "credential" not in low
        and "identified" not in low
        and "authoriz" not in low
        and "bearer" not in low
        and "akia" not in low
        and "asia" not in low
        and "gh" not in low
        and "xox" not in low
    ):
        return value
    out = value
    if "private key" in low:
        out = _PEM_RE.sub(REDACTED, out)
    out = redact_uri(out)
    if "=" in out or ":" in out:
        out = _KV_RE.sub(_mask_kv, out)
    if "password" in low:
        out = _SQL_PASSWORD_RE.sub(_mask_sql, out)
    if "--" in out:
        out = _FLAG_RE.sub(_mask_sql, out)
    if "identified" in low:
        out = _IDENTIFIED_RE.sub(_mask_sql, out)
    if "authoriz" in low:
        out = _AUTH_RE.sub(_mask_group2, out)
    if "bearer" in low:
        out = _BEARER_RE.sub(_mask_group2, out)
    if "akia" in low or "asia" in low or "gh" in low or "xox" in low:
        out = _TOKEN_RE.sub(REDACTED, out)
    return out


# Strings (short ones) already seen to need no change under redact_text. Real streams repeat the same
# producers, schema URLs, column names and types over and over; a set lookup is ~20 ns where the gate
# tests above are ~400 ns. Bounded: cleared when full, which only costs recomputation.
_CLEAN: set[str] = set()
_CLEAN_MAX = 32_768
_CLEAN_MAX_LEN = 256

# Member key -> kind, for keys free of NUL (a renamed key is rare and never cached). Keys repeat even
# more than values (facet field names), so the normalisation above runs once per distinct key.
_KEY_KINDS: dict[str, int] = {}
_KEY_KINDS_MAX = 16_384
_kind_of = _KEY_KINDS.get  # bound once: the hot loop saves an attribute lookup per key


def _key_kind(key: str) -> int:
    if key in ("namespace", "name"):
        return _KIND_IDENT
    if key == "value":
        return _KIND_VALUE
    if key in _VOLATILE_KEYS:
        return _KIND_VOLATILE
    if key in _FACETS_KEYS:
        return _KIND_FACETS
    return _KIND_SECRET if is_secret_key(key) else _KIND_PLAIN


def _pointer(path: Any, last: str | int | None = None) -> str:
    """RFC 6901 pointer of a path kept as linked (parent, key) tuples (built only when one is needed).

    `path` None is the document root; `last`, when given, is one more member below it.
    """
    parts: list[str] = [] if last is None else [str(last)]
    while path is not None:
        path, key = path
        parts.append(str(key))
    if not parts:
        return ""
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in reversed(parts))


class _TooDeep(Exception):
    """Raised from the depth of the walk; turned into an EventRejected by the caller, which knows the limit."""

    def __init__(self, path: Any) -> None:
        super().__init__()
        self.path = path


class _Walk:
    """The state of one walk. The hot loops below only touch it on the slow paths (a cache miss, a
    redaction, an error): module functions with the memos as globals are measurably faster than closures
    or methods for the common case."""

    __slots__ = ("max_string", "redactions", "strict")

    def __init__(self, *, max_string: int, strict: bool) -> None:
        self.max_string = max_string
        self.strict = strict  # refuse values JSON cannot hold (parse_event) rather than pass them through
        self.redactions: list[str] = []


def _on_key(walk: _Walk, key: Any, path: Any) -> tuple[str, int]:
    """Classify (and sanitise) a key the memo does not know yet."""
    if type(key) is not str:
        if walk.strict:
            raise EventRejected(_pointer(path), f"object keys must be strings, got {type(key).__name__}")
        key = str(key)
    if len(key) > walk.max_string:
        raise EventRejected(
            _pointer(path),
            f"an object key here is {len(key)} characters long; the limit is {walk.max_string}",
            type_="too-large",
        )
    if _NUL in key:
        # PostgreSQL cannot store U+0000 in jsonb keys either.
        clean_key = key.replace(_NUL, _REPLACEMENT)
        return clean_key, _key_kind(clean_key)
    kind = _key_kind(key)
    if len(key) <= _CLEAN_MAX_LEN:
        if len(_KEY_KINDS) >= _KEY_KINDS_MAX:
            _KEY_KINDS.clear()
        _KEY_KINDS[key] = kind
    return key, kind


def _on_string(walk: _Walk, value: str, path: Any, key: str | int | None, kind: int) -> str:
    """Check, sanitise and redact a string the clean memo does not know."""
    if len(value) > walk.max_string:
        raise EventRejected(
            _pointer(path, key),
            f"a string is {len(value)} characters long; the limit is {walk.max_string}",
            type_="too-large",
        )
    had_nul = _NUL in value
    if had_nul:
        # PostgreSQL text/jsonb cannot store U+0000; a replacement character keeps the event storable.
        value = value.replace(_NUL, _REPLACEMENT)
    out = redact_uri(value) if kind == _KIND_IDENT else redact_text(value)
    if out is not value and out != value:
        walk.redactions.append(_pointer(path, key))
        return out
    # Remember the string as clean (for either kind) if the full rules leave it alone too: identifiers
    # (dataset names) repeat across events as much as anything. Never run ids and times: each is unique.
    if (
        not had_nul
        and len(value) <= _CLEAN_MAX_LEN
        and (kind == _KIND_PLAIN or (kind == _KIND_IDENT and redact_text(value) == value))
    ):
        if len(_CLEAN) >= _CLEAN_MAX:
            _CLEAN.clear()
        _CLEAN.add(value)
    return value


def _on_secret(walk: _Walk, value: Any, path: Any, key: str | int) -> Any:
    """What a value under a credential-named member becomes (null and booleans hide nothing)."""
    if value is None or type(value) is bool or (type(value) is str and value in _ALREADY):
        return value
    walk.redactions.append(_pointer(path, key))
    return REDACTED


def _on_value(walk: _Walk, obj: dict[Any, Any], value: Any, path: Any, key: str) -> Any:
    """A "value" member: masked when a sibling "name" (or "key", as in tags and property lists) names a
    secret: {"name": "DB_PASSWORD", "value": "…"} in the environmentVariables run facet."""
    name = obj.get("name")
    if type(name) is not str:
        name = obj.get("key")
    if type(name) is str and is_secret_env_name(name):
        return _on_secret(walk, value, path, key)
    if type(value) is str and value not in _CLEAN:
        return _on_string(walk, value, path, key, _KIND_PLAIN)
    return value


def _on_other(walk: _Walk, value: Any, path: Any, key: str | int, room: int) -> Any:
    """Numbers, and whatever is not a plain str/dict/list/int/bool/None."""
    t = type(value)
    if t is float:
        if walk.strict and not math.isfinite(value):
            raise EventRejected(_pointer(path, key), f"numbers must be finite, got {value!r}")
        return value
    if t is int:
        return value
    if walk.strict:
        raise EventRejected(_pointer(path, key), f"not a JSON value: {t.__name__}")
    # redact() is lenient: subclasses (a str enum, an OrderedDict, a tuple) are walked as their JSON
    # base type; anything else (a datetime, a UUID) passes through untouched.
    if isinstance(value, str):
        return _on_string(walk, str(value), path, key, _KIND_PLAIN)
    if isinstance(value, dict):
        return _walk_dict(walk, value, (path, key), room - 1)
    if isinstance(value, list | tuple):
        return _walk_list(walk, list(value), (path, key), room - 1, False)
    return value


def _walk_dict(walk: _Walk, obj: dict[Any, Any], path: Any, room: int) -> dict[str, Any]:
    """Copy an object. `room` is how many more levels of nesting are allowed, this one included."""
    if room <= 0:
        raise _TooDeep(path)
    out: dict[str, Any] = {}
    for key, value in obj.items():
        kind = _kind_of(key)
        if kind is None:
            key, kind = _on_key(walk, key, path)  # the sanitised key replaces the received one
        t = type(value)
        if t is str:
            if kind < _KIND_SECRET:  # plain or identifier: the clean memo applies
                if value not in _CLEAN:
                    value = _on_string(walk, value, path, key, kind)
            elif kind == _KIND_SECRET:
                value = _on_secret(walk, value, path, key)
            elif kind == _KIND_VALUE:
                value = _on_value(walk, obj, value, path, key)
            else:
                value = _on_string(walk, value, path, key, kind)
        elif t is dict:
            if kind == _KIND_FACETS and walk.strict:
                value = _walk_facets(walk, value, (path, key), room - 1)
            else:
                value = _walk_dict(walk, value, (path, key), room - 1)
        elif t is list:
            value = _walk_list(walk, value, (path, key), room - 1, kind == _KIND_SECRET)
        elif t is not bool and value is not None:
            if t is not int:
                value = _on_other(walk, value, path, key, room)
            if kind == _KIND_SECRET:
                value = _on_secret(walk, value, path, key)
            elif kind == _KIND_VALUE:
                value = _on_value(walk, obj, value, path, key)
        out[key] = value
    return out


# Facets seen before that the walk left unchanged, by a digest of their JSON: the (nesting room, string
# limit) they passed with. Pipelines send the same dataset and job facets on every run (a table's schema,
# a job's column lineage and SQL): walking them string by string again was most of the accepting path's
# CPU for batches. A facet whose bytes are identical gets the identical outcome (the rules depend on
# nothing but the content), so it is kept as received, shared with the decoded body, instead of copied.
# A 128-bit BLAKE2 digest: equal digests of unequal facets are not a practical risk. Run facets are not
# memoised: they name the run (ids, times) and never repeat. Bounded: cleared when full.
_CLEAN_FACETS: dict[bytes, tuple[int, int]] = {}
_CLEAN_FACETS_MAX = 32_768


def _walk_facets(walk: _Walk, obj: dict[Any, Any], path: Any, room: int) -> dict[str, Any]:
    """An object of facets in a strict walk: each facet (an object) is looked up in the clean memo first."""
    if room <= 0:
        raise _TooDeep(path)
    parent = path[0]
    if (parent is not None and parent[1] == "run") or any(type(facet) is not dict for facet in obj.values()):
        return _walk_dict(walk, obj, path, room)
    out: dict[str, Any] = {}
    for key, facet in obj.items():
        if _kind_of(key) is None:
            key, _ = _on_key(walk, key, path)
        out[key] = _clean_facet(walk, facet, (path, key), room - 1)
    return out


def _clean_facet(walk: _Walk, facet: dict[Any, Any], path: Any, room: int) -> dict[str, Any]:
    try:
        received = orjson.dumps(facet)
    except orjson.JSONEncodeError:  # too deep for orjson, a lone surrogate: the walk says what is wrong
        return _walk_dict(walk, facet, path, room)
    digest = hashlib.blake2b(received, digest_size=16).digest()
    passed = _CLEAN_FACETS.get(digest)
    # It passed with at most this much room and at most this string limit: it passes again.
    if passed is not None and passed[0] <= room and passed[1] <= walk.max_string:
        return facet
    redacted = len(walk.redactions)
    out = _walk_dict(walk, facet, path, room)
    # Unchanged: nothing redacted and no NUL replaced (orjson writes U+0000 as \u0000, which is how a
    # NUL in a key or a string shows; a literal backslash-u0000 text only costs a memo entry).
    if len(walk.redactions) == redacted and b"\\u0000" not in received:
        if len(_CLEAN_FACETS) >= _CLEAN_FACETS_MAX:
            _CLEAN_FACETS.clear()
        _CLEAN_FACETS[digest] = (room, walk.max_string)
    return out


def _walk_list(walk: _Walk, obj: list[Any], path: Any, room: int, secret: bool) -> list[Any]:
    """Copy an array; `secret` when it is the value of a credential-named member (its scalars are masked)."""
    if room <= 0:
        raise _TooDeep(path)
    out: list[Any] = []
    append = out.append
    # An item's index is len(out) when it is looked at: cheaper than enumerate() in the hot path.
    for value in obj:
        t = type(value)
        if t is str:
            if secret:
                value = _on_secret(walk, value, path, len(out))
            elif value not in _CLEAN:
                value = _on_string(walk, value, path, len(out), _KIND_PLAIN)
        elif t is dict:
            value = _walk_dict(walk, value, (path, len(out)), room - 1)
        elif t is list:
            value = _walk_list(walk, value, (path, len(out)), room - 1, secret)
        elif t is not bool and value is not None:
            if t is not int:
                value = _on_other(walk, value, path, len(out), room)
            if secret:
                value = _on_secret(walk, value, path, len(out))
        append(value)
    return out


def _too_deep(exc: _TooDeep, max_depth: int) -> EventRejected:
    return EventRejected(
        _pointer(exc.path),
        f"objects and arrays are nested more than {max_depth} levels deep here; the limit is {max_depth}",
        type_="too-deep",
    )


def _check_lengths(value: Any, path: Any, max_string: int) -> None:
    """The length check the clean memo skips, for limits below the memo's entry size (rare: tests)."""
    if type(value) is str:
        if len(value) > max_string:
            raise EventRejected(
                _pointer(path),
                f"a string is {len(value)} characters long; the limit is {max_string}",
                type_="too-large",
            )
    elif type(value) is dict:
        for key, item in value.items():
            if len(key) > max_string:
                raise EventRejected(
                    _pointer(path),
                    f"an object key here is {len(key)} characters long; the limit is {max_string}",
                    type_="too-large",
                )
            _check_lengths(item, (path, key), max_string)
    elif type(value) is list:
        for index, item in enumerate(value):
            _check_lengths(item, (path, index), max_string)


def sanitise_event(
    obj: dict[str, Any], *, max_depth: int, max_string: int
) -> tuple[dict[str, Any], list[str]]:
    """A sanitised, redacted copy of an event object and the pointers redacted.

    Raises EventRejected (422) for nesting deeper than `max_depth` ("too-deep"), a string or key longer
    than `max_string` ("too-large"), and values JSON cannot hold (NaN, non-string keys, other types).
    """
    walk = _Walk(max_string=max_string, strict=True)
    try:
        payload = _walk_dict(walk, obj, None, max_depth)
    except _TooDeep as exc:
        raise _too_deep(exc, max_depth) from None
    if max_string < _CLEAN_MAX_LEN:
        _check_lengths(payload, None, max_string)
    return payload, walk.redactions


def redact(obj: Any, *, max_depth: int = 256) -> tuple[Any, list[str]]:
    """Return a redacted deep copy of `obj` (any JSON-like value) and the JSON Pointers that were redacted.

    NUL characters are replaced too. Values JSON does not have are passed through untouched.
    """
    walk = _Walk(max_string=1 << 62, strict=False)
    result: Any
    try:
        if isinstance(obj, dict):
            result = _walk_dict(walk, obj, None, max_depth)
        elif isinstance(obj, list | tuple):
            result = _walk_list(walk, list(obj), None, max_depth, False)
        elif isinstance(obj, str):
            result = _on_string(walk, str(obj), None, None, _KIND_PLAIN)
        else:
            result = obj
    except _TooDeep as exc:
        raise _too_deep(exc, max_depth) from None
    return result, walk.redactions
