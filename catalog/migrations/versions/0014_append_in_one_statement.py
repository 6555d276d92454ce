"""Append to the event log in one statement: `append_to_event_log(...)`.

The accepting path's group commit took six round trips for every group (the pool's ping, BEGIN, the
append lock, the INSERT, NOTIFY, COMMIT), and the serving process waited for each: a group's append took
3.7 ms for 16 events and 3.0 ms for 4 (median of 300 groups of `bench/ingest.py`'s events on this
machine's PostgreSQL 15), of which PostgreSQL's own work was a minority. This function does the same work
in one statement, which the ingest writer sends on its own connection with no explicit transaction, so
the statement is the transaction: one round trip (2.6 ms and 1.4 ms for the same groups).

Same guarantees as before (catalog/ingest/service.py's docstring): the transaction-scoped append lock is
taken by the first statement of the function, BEFORE the INSERT draws ids, and held until COMMIT; the
INSERT runs with a snapshot taken after the lock (READ COMMITTED: each statement of a VOLATILE function
takes its own). Returns every received event's log position, `fresh` for those this call appended, and
NOTIFYs `channel` (delivered at COMMIT) when it appended anything.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

APPEND_TO_EVENT_LOG = r"""
CREATE FUNCTION append_to_event_log(
    lock_key bigint, channel text,
    t timestamptz[], d bytea[], k text[], e text[], r uuid[], jn text[], j text[], p text[], x text[],
    m text[], rd text[], ek text[])
RETURNS TABLE (id bigint, event_time timestamptz, digest bytea, fresh boolean)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    ids bigint[];
    times timestamptz[];
    digests bytea[];
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    -- Duplicates (same event time and digest) are skipped by the unique constraint.
    WITH appended AS (
        INSERT INTO event_log AS l (event_time, digest, kind, event_type, run_uuid, job_namespace, job_name,
                                    producer, payload, emitter_product, redactions, emitter_key)
        SELECT u.t, u.d, u.k, u.e, u.r, u.jn, u.j, u.p, u.x::jsonb, u.m,
               CASE WHEN u.rd = '' THEN NULL ELSE string_to_array(u.rd, E'\n') END, u.ek
        FROM unnest(t, d, k, e, r, jn, j, p, x, m, rd, ek) AS u(t, d, k, e, r, jn, j, p, x, m, rd, ek)
        ON CONFLICT (event_time, digest) DO NOTHING
        RETURNING l.id, l.event_time, l.digest)
    SELECT array_agg(a.id), array_agg(a.event_time), array_agg(a.digest) INTO ids, times, digests
    FROM appended a;
    IF ids IS NOT NULL THEN
        PERFORM pg_notify(channel, '');
        RETURN QUERY SELECT f.id, f.event_time, f.digest, true FROM unnest(ids, times, digests) AS f(id, event_time, digest);
    END IF;
    -- The rest were logged before (a retry): where they are.
    IF coalesce(cardinality(ids), 0) < cardinality(t) THEN
        RETURN QUERY
        SELECT l.id, l.event_time, l.digest, false
        FROM (SELECT s.t, s.d FROM unnest(t, d) AS s(t, d)
              EXCEPT SELECT f.t, f.d FROM unnest(times, digests) AS f(t, d)) AS logged
        JOIN event_log l ON l.event_time = logged.t AND l.digest = logged.d;
    END IF;
END
$fn$
"""


def upgrade() -> None:
    op.execute(APPEND_TO_EVENT_LOG)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS append_to_event_log(bigint, text, timestamptz[], bytea[], text[], text[], uuid[],"
        " text[], text[], text[], text[], text[], text[], text[])"
    )
