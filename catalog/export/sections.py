"""What goes into a bundle: one SQL query per file, each filtered to the catalog as it stood at `asOf`.

As-of works on event time: a dataset, column, job or edge exists at T when it was first seen at or before
T (first_seen is event time, so the answer does not depend on when the events arrived or on later
events). Stewards' and auditors' records (decisions, grants, waivers, denials, the audit log) carry the
wall-clock time they were made, and are cut at T the same way, with their state as of T (a grant
revoked after T is still active in a bundle as of T).

Sections whose tables belong to modules that are not installed (no table) are left out, and the
manifest says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Product and tier of a dataset, when the policy module has assigned them.
_DS_PRODUCT = (
    "(SELECT pa.product FROM product_assignments pa WHERE pa.subject_kind = 'dataset' AND pa.subject_id = {})"
)
_NS_TIER = (
    "(SELECT pa.tier FROM product_assignments pa WHERE pa.subject_kind = 'namespace' AND pa.subject_id = {})"
)
_PRODUCT_FILTER = "(CAST(:product AS text) IS NULL OR {} = CAST(:product AS text))"


@dataclass(frozen=True, slots=True)
class Section:
    """One exported table: written as `<name>.csv` and `<name>.json`."""

    name: str
    title: str
    requires: tuple[str, ...]  # tables that must exist
    sql: str
    # Optional variant used when product_assignments is missing (no product/tier columns to join).
    sql_without_products: str | None = None
    period_filtered: bool = False


@dataclass
class SectionResult:
    """What writing one section produced: its row count, columns and a sample (for the report)."""

    section: Section
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    sample: list[list[str]] = field(default_factory=list)


def _inventory() -> list[Section]:
    ds_filter = _PRODUCT_FILTER.format(_DS_PRODUCT.format("d.id"))
    return [
        Section(
            "inventory/datasets",
            "Datasets",
            ("datasets",),
            f"""
SELECT n.name AS namespace, d.name AS dataset, {_DS_PRODUCT.format("d.id")} AS product,
       {_NS_TIER.format("n.id")} AS tier, d.first_seen
FROM datasets d JOIN namespaces n ON n.id = d.namespace_id
WHERE d.first_seen <= :as_of AND {ds_filter}
ORDER BY n.name, d.name""",
            """
SELECT n.name AS namespace, d.name AS dataset, NULL AS product, NULL AS tier, d.first_seen
FROM datasets d JOIN namespaces n ON n.id = d.namespace_id
WHERE d.first_seen <= :as_of ORDER BY n.name, d.name""",
        ),
        # Types and descriptions come from the schema version current at T (the latest first seen by T),
        # not from dataset_fields, whose type follows the newest schema ever seen.
        Section(
            "inventory/columns",
            "Columns",
            ("datasets", "dataset_fields", "dataset_versions"),
            f"""
SELECT n.name AS namespace, d.name AS dataset, f.path AS column_path,
       CASE WHEN v.fields IS NULL THEN f.type ELSE jsonb_path_query_first(v.fields, '$.** ? (@.name == $p)',
            jsonb_build_object('p', split_part(f.path, '.', array_length(string_to_array(f.path, '.'), 1)))) ->> 'type'
       END AS type,
       f.first_seen
FROM dataset_fields f
JOIN datasets d ON d.id = f.dataset_id
JOIN namespaces n ON n.id = d.namespace_id
LEFT JOIN LATERAL (
    SELECT dv.fields FROM dataset_versions dv
    WHERE dv.dataset_id = d.id AND dv.first_seen <= :as_of
    ORDER BY dv.first_seen DESC, dv.id DESC LIMIT 1
) v ON true
WHERE f.first_seen <= :as_of AND {ds_filter}
ORDER BY n.name, d.name, f.path""",
            """
SELECT n.name AS namespace, d.name AS dataset, f.path AS column_path,
       CASE WHEN v.fields IS NULL THEN f.type ELSE jsonb_path_query_first(v.fields, '$.** ? (@.name == $p)',
            jsonb_build_object('p', split_part(f.path, '.', array_length(string_to_array(f.path, '.'), 1)))) ->> 'type'
       END AS type,
       f.first_seen
FROM dataset_fields f
JOIN datasets d ON d.id = f.dataset_id
JOIN namespaces n ON n.id = d.namespace_id
LEFT JOIN LATERAL (
    SELECT dv.fields FROM dataset_versions dv
    WHERE dv.dataset_id = d.id AND dv.first_seen <= :as_of
    ORDER BY dv.first_seen DESC, dv.id DESC LIMIT 1
) v ON true
WHERE f.first_seen <= :as_of
ORDER BY n.name, d.name, f.path""",
        ),
        Section(
            "inventory/jobs",
            "Jobs",
            ("jobs",),
            """
SELECT n.name AS namespace, j.name AS job, j.first_seen,
       (SELECT string_agg(DISTINCT dn.name || '/' || dd.name, ' ; ') FROM job_io io
        JOIN datasets dd ON dd.id = io.dataset_id JOIN namespaces dn ON dn.id = dd.namespace_id
        WHERE io.job_id = j.id AND io.direction = 'input' AND io.first_seen <= :as_of) AS inputs,
       (SELECT string_agg(DISTINCT dn.name || '/' || dd.name, ' ; ') FROM job_io io
        JOIN datasets dd ON dd.id = io.dataset_id JOIN namespaces dn ON dn.id = dd.namespace_id
        WHERE io.job_id = j.id AND io.direction = 'output' AND io.first_seen <= :as_of) AS outputs
FROM jobs j JOIN namespaces n ON n.id = j.namespace_id
WHERE j.first_seen <= :as_of
ORDER BY n.name, j.name""",
        ),
        Section(
            "inventory/column_edges",
            "Column lineage",
            ("column_edges",),
            """
SELECT sn.name AS source_namespace, sd.name AS source_dataset, sf.path AS source_column,
       tn.name AS target_namespace, td.name AS target_dataset, tf.path AS target_column,
       jn.name || '/' || j.name AS job, e.transformation_type, e.transformation_subtype, e.masking,
       e.first_seen
FROM column_edges e
JOIN datasets sd ON sd.id = e.source_dataset_id JOIN namespaces sn ON sn.id = sd.namespace_id
JOIN datasets td ON td.id = e.target_dataset_id JOIN namespaces tn ON tn.id = td.namespace_id
LEFT JOIN dataset_fields sf ON sf.id = e.source_field_id
LEFT JOIN dataset_fields tf ON tf.id = e.target_field_id
LEFT JOIN jobs j ON j.id = e.job_id LEFT JOIN namespaces jn ON jn.id = j.namespace_id
WHERE e.first_seen <= :as_of
ORDER BY sn.name, sd.name, sf.path, tn.name, td.name, tf.path, job""",
        ),
    ]


# The path of a propagated row (alias c), rebuilt from its via pointers (bounded by its depth), as
# "ns/dataset#field -> ... -> ns/dataset#field"; NULL for other sources.
_PROPAGATED_VIA = """(
    WITH RECURSIVE chain(field_id, via_field_id, via_masked, depth) AS (
        SELECT c.field_id, c.via_field_id, c.via_masked, c.depth WHERE c.source = 'propagated'
        UNION ALL
        SELECT p.field_id, p.via_field_id, p.via_masked, p.depth
        FROM chain ch JOIN classifications p ON p.source = 'propagated' AND p.field_id = ch.via_field_id
         AND p.tag = c.tag AND p.masked = ch.via_masked AND p.depth = ch.depth - 1
        WHERE ch.depth > 1
    )
    SELECT string_agg(pn.name || '/' || pd.name || '#' || pf.path, ' -> ' ORDER BY h.pos)
    FROM (SELECT depth AS pos, field_id FROM chain UNION ALL SELECT 0, via_field_id FROM chain WHERE depth = 1) h
    JOIN dataset_fields pf ON pf.id = h.field_id JOIN datasets pd ON pd.id = pf.dataset_id
    JOIN namespaces pn ON pn.id = pd.namespace_id
)"""


def _governance() -> list[Section]:
    return [
        Section(
            "pii/inventory",
            "PII inventory",
            ("classifications", "product_assignments"),
            f"""
SELECT n.name AS namespace, d.name AS dataset, f.path AS column_path, c.tag, c.category, c.source,
       c.confidence, c.masked, c.depth, {_PROPAGATED_VIA} AS propagated_via,
       {_DS_PRODUCT.format("d.id")} AS product
FROM classifications c
JOIN datasets d ON d.id = c.dataset_id JOIN namespaces n ON n.id = d.namespace_id
LEFT JOIN dataset_fields f ON f.id = c.field_id
WHERE d.first_seen <= :as_of AND (f.id IS NULL OR f.first_seen <= :as_of)
  AND {_PRODUCT_FILTER.format(_DS_PRODUCT.format("d.id"))}
ORDER BY n.name, d.name, f.path, c.tag, c.source""",
        ),
        Section(
            "pii/decisions",
            "Stewards' classification decisions",
            ("classification_decisions",),
            """
SELECT namespace, dataset, field_path, tag, action, reason, author, decided_at,
       CASE WHEN retired_at <= :as_of THEN retired_at END AS retired_at,
       CASE WHEN retired_at <= :as_of THEN retired_by END AS retired_by
FROM classification_decisions WHERE decided_at <= :as_of
ORDER BY decided_at, id""",
        ),
        # Column flows out of a PII column that cross a product boundary or land in the analytics tier.
        Section(
            "pii/flows",
            "PII flows across product boundaries and into analytics",
            ("classifications", "product_assignments", "column_edges"),
            f"""
SELECT * FROM (
  SELECT sn.name AS source_namespace, sd.name AS source_dataset, sf.path AS source_column,
         tn.name AS target_namespace, td.name AS target_dataset, tf.path AS target_column,
         jn.name || '/' || j.name AS job,
         (SELECT string_agg(DISTINCT c.tag, ',') FROM classifications c WHERE c.field_id = e.source_field_id) AS pii_tags,
         {_DS_PRODUCT.format("sd.id")} AS source_product, {_DS_PRODUCT.format("td.id")} AS target_product,
         {_NS_TIER.format("tn.id")} AS target_tier, e.masking, e.transformation_type, e.first_seen
  FROM column_edges e
  JOIN datasets sd ON sd.id = e.source_dataset_id JOIN namespaces sn ON sn.id = sd.namespace_id
  JOIN datasets td ON td.id = e.target_dataset_id JOIN namespaces tn ON tn.id = td.namespace_id
  JOIN dataset_fields sf ON sf.id = e.source_field_id
  LEFT JOIN dataset_fields tf ON tf.id = e.target_field_id
  LEFT JOIN jobs j ON j.id = e.job_id LEFT JOIN namespaces jn ON jn.id = j.namespace_id
  WHERE e.first_seen <= :as_of
    AND EXISTS (SELECT 1 FROM classifications c WHERE c.field_id = e.source_field_id)
) flows
WHERE (source_product IS DISTINCT FROM target_product OR target_tier = 'analytics')
  AND (CAST(:product AS text) IS NULL OR CAST(:product AS text) IN (source_product, target_product))
ORDER BY source_namespace, source_dataset, source_column, target_namespace, target_dataset, target_column""",
        ),
        Section(
            "findings/findings",
            "Findings, with their status and waiver as of the export instant",
            ("findings",),
            """
SELECT id, rule, severity,
       CASE WHEN status_changed_at <= :as_of THEN status ELSE 'open' END AS status,
       product, subject_display AS subject, subject_kind,
       subject ->> 'namespace' AS namespace, subject ->> 'name' AS name, subject ->> 'field' AS field,
       subject #>> '{job,namespace}' AS job_namespace, subject #>> '{job,name}' AS job,
       subject ->> 'direction' AS direction,
       evidence ->> 'reason' AS reason, evidence ->> 'run_id' AS run_id, evidence ->> 'uri' AS uri,
       first_seen,
       CASE WHEN status_changed_at <= :as_of AND status = 'waived' THEN waived_by END AS waived_by,
       CASE WHEN status_changed_at <= :as_of AND status = 'waived' THEN waiver_reason END AS waiver_reason,
       CASE WHEN status_changed_at <= :as_of AND status = 'waived' THEN waived_until END AS waived_until,
       subject_key, evidence::text AS evidence
FROM findings
WHERE first_seen <= :as_of AND (CAST(:product AS text) IS NULL OR product = CAST(:product AS text))
ORDER BY id""",
        ),
        Section(
            "findings/changes",
            "Finding status changes and waivers",
            ("finding_changes",),
            """
SELECT finding_id, action, actor, reason, until, at FROM finding_changes
WHERE at <= :as_of AND (CAST(:from AS timestamptz) IS NULL OR at >= CAST(:from AS timestamptz))
  AND (CAST(:to AS timestamptz) IS NULL OR at <= CAST(:to AS timestamptz))
ORDER BY at, id""",
            period_filtered=True,
        ),
        Section(
            "access/grants",
            "Cross-product grants as of the export instant",
            ("grants",),
            """
SELECT id, grantor_product, grantee_product, scope, namespace, name, masked_only, reason, created_by,
       created_at, expires_at,
       CASE WHEN revoked_at <= :as_of THEN 'revoked' WHEN expires_at <= :as_of THEN 'expired'
            ELSE 'active' END AS status,
       CASE WHEN revoked_at <= :as_of THEN revoked_at END AS revoked_at,
       CASE WHEN revoked_at <= :as_of THEN revoked_by END AS revoked_by
FROM grants
WHERE created_at <= :as_of
  AND (CAST(:product AS text) IS NULL OR CAST(:product AS text) IN (grantor_product, grantee_product))
ORDER BY id""",
        ),
        Section(
            "access/grant_changes",
            "Grant changes",
            ("grant_changes",),
            """
SELECT grant_id, action, actor, at, detail::text AS detail FROM grant_changes
WHERE at <= :as_of AND (CAST(:from AS timestamptz) IS NULL OR at >= CAST(:from AS timestamptz))
  AND (CAST(:to AS timestamptz) IS NULL OR at <= CAST(:to AS timestamptz))
ORDER BY at, id""",
            period_filtered=True,
        ),
        Section(
            "access/denials",
            "Access denials",
            ("access_denials",),
            """
SELECT at, key_id, role, product, domain, obj, act, rule, path FROM access_denials
WHERE at <= :as_of AND (CAST(:from AS timestamptz) IS NULL OR at >= CAST(:from AS timestamptz))
  AND (CAST(:to AS timestamptz) IS NULL OR at <= CAST(:to AS timestamptz))
  AND (CAST(:product AS text) IS NULL OR product = CAST(:product AS text))
ORDER BY at, id""",
            period_filtered=True,
        ),
    ]


# The audit slice keeps every chain field so it can be re-verified offline (`catalog export verify`).
AUDIT = Section(
    "audit/audit_log",
    "Audit log (hash-chained)",
    ("audit_log",),
    """
SELECT seq, recorded_at, action, actor, subject, details::text AS details,
       encode(prev_hash, 'hex') AS prev_hash, encode(hash, 'hex') AS hash
FROM audit_log
WHERE recorded_at <= :as_of AND (CAST(:from AS timestamptz) IS NULL OR recorded_at >= CAST(:from AS timestamptz))
  AND (CAST(:to AS timestamptz) IS NULL OR recorded_at <= CAST(:to AS timestamptz))
ORDER BY seq""",
    period_filtered=True,
)

SECTIONS: list[Section] = [*_inventory(), *_governance(), AUDIT]
