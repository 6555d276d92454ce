import { useSearchParams } from "react-router-dom";
import { rest } from "../api";
import { useLoad } from "../hooks";
import { Card, ErrorBox, ProductBadge, Spinner } from "../components";
import { Finding, FindingsTable, SEVERITIES } from "../findings";

interface Summary {
  products: { product: string | null; status: Record<string, number>; openByRule: Record<string, number>; openBySeverity: Record<string, number> }[];
}
const RULES = [
  "unencrypted-transfer",
  "unlineaged-transfer",
  "cross-product-access",
  "shared-database",
  "analytics-on-oltp",
  "pii-unmasked",
  "credentials-in-metadata",
  "ownership-conflict",
];

export function FindingsPage() {
  const [params, setParams] = useSearchParams();
  const filters = { product: params.get("product") ?? "", rule: params.get("rule") ?? "", severity: params.get("severity") ?? "", status: params.get("status") ?? "open" };
  const qs = new URLSearchParams({ limit: "500" });
  for (const [k, v] of Object.entries(filters)) if (v && v !== "any") qs.set(k, v);
  const findings = useLoad(() => rest<{ findings: Finding[]; totalCount?: number }>(`/api/v1/findings?${qs}`), [qs.toString()]);
  const summary = useLoad(() => rest<Summary>("/api/v1/findings/summary"), []);
  const products = useLoad(() => rest<{ products: string[] }>("/api/v1/policy/products").then((r) => r.products).catch(() => []), []);
  const set = (k: string, v: string) => {
    const n = new URLSearchParams(params);
    v ? n.set(k, v) : n.delete(k);
    setParams(n, { replace: true });
  };
  return (
    <div className="page">
      <div className="page-head">
        <h1>Findings</h1>
        <p className="sub">Governance findings of the products this key may read. A steward of the finding's product waives (with a reason and an expiry) and lifts waivers.</p>
      </div>
      {summary.data && summary.data.products.length > 0 && (
        <div className="summary">
          {summary.data.products.map((p) => (
            <button key={p.product ?? "-"} className="summary-card" onClick={() => set("product", p.product ?? "")}>
              <ProductBadge product={p.product} />
              <span>
                <strong>{p.status.open ?? 0}</strong> open
              </span>
              <span className="sevbar">
                {SEVERITIES.filter((s) => p.openBySeverity[s]).map((s) => (
                  <span key={s} className={`badge badge-sev-${s}`}>
                    {p.openBySeverity[s]} {s}
                  </span>
                ))}
              </span>
              {(p.status.waived ?? 0) > 0 && <small className="muted">{p.status.waived} waived</small>}
            </button>
          ))}
        </div>
      )}
      <div className="filters" role="group" aria-label="Filters">
        <label>
          Product
          <select value={filters.product} onChange={(e) => set("product", e.target.value)}>
            <option value="">any</option>
            {(products.data ?? []).map((p) => <option key={p}>{p}</option>)}
          </select>
        </label>
        <label>
          Rule
          <select value={filters.rule} onChange={(e) => set("rule", e.target.value)}>
            <option value="">any</option>
            {RULES.map((r) => <option key={r}>{r}</option>)}
          </select>
        </label>
        <label>
          Severity
          <select value={filters.severity} onChange={(e) => set("severity", e.target.value)}>
            <option value="">any</option>
            {SEVERITIES.map((r) => <option key={r}>{r}</option>)}
          </select>
        </label>
        <label>
          Status
          <select value={filters.status} onChange={(e) => set("status", e.target.value)}>
            <option value="any">any</option>
            <option value="open">open</option>
            <option value="waived">waived</option>
            <option value="resolved">resolved</option>
          </select>
        </label>
        <span className="count">{findings.data ? `${findings.data.findings.length} shown` : ""}</span>
      </div>
      <Card title="Findings">
        {findings.loading && !findings.data && <Spinner />}
        {findings.error && <ErrorBox error={findings.error} />}
        {findings.data && <FindingsTable findings={findings.data.findings} onChanged={() => { findings.reload(); summary.reload(); }} />}
      </Card>
    </div>
  );
}
