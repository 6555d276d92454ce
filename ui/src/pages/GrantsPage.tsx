import { FormEvent, useState } from "react";
import { useSearchParams } from "react-router-dom";
import { ApiError, fmtTime, rest } from "../api";
import { useLoad } from "../hooks";
import { Badge, Card, Empty, ErrorBox, ProductBadge, Spinner } from "../components";
import { mayStewardAny, mayStewardProduct, useMe } from "../session";

interface Grant {
  id: number;
  grantorProduct: string;
  granteeProduct: string;
  scope: "dataset" | "namespace" | "pattern";
  namespace: string;
  name: string | null;
  maskedOnly: boolean;
  reason: string;
  expiresAt: string | null;
  createdBy: string;
  createdAt: string;
  revokedAt: string | null;
}

/** Cross-product read grants of a product: a steward of the owning product gives and revokes them. */
export function GrantsPage() {
  const [params, setParams] = useSearchParams();
  const me = useMe();
  const product = params.get("product") ?? "";
  const products = useLoad(() => rest<{ products: string[] }>("/api/v1/policy/products").then((r) => r.products).catch(() => []), []);
  const grants = useLoad(
    () => rest<{ grants: Grant[] }>(`/api/v1/grants?${new URLSearchParams(product ? { product, includeRevoked: "true" } : { includeRevoked: "true" })}`).then((r) => r.grants),
    [product],
  );
  const [actionError, setActionError] = useState<string | null>(null);
  const revoke = async (g: Grant) => {
    setActionError(null);
    try {
      await rest(`/api/v1/grants/${g.id}`, { method: "DELETE" });
      grants.reload();
    } catch (err) {
      setActionError(err instanceof ApiError ? (err.forbidden ? `Not allowed: ${err.message}` : err.message) : String(err));
    }
  };
  return (
    <div className="page">
      <div className="page-head">
        <h1>Grants</h1>
        <p className="sub">Another product reads a product's internals (columns, classifications, lineage) only under a grant from the owning product's steward: one dataset, a namespace, or a pattern; optionally masked columns only; with an expiry.</p>
      </div>
      <div className="filters" role="group" aria-label="Filters">
        <label>
          Product
          <select value={product} onChange={(e) => setParams(e.target.value ? { product: e.target.value } : {}, { replace: true })}>
            <option value="">mine / all I may see</option>
            {(products.data ?? []).map((p) => (
              <option key={p}>{p}</option>
            ))}
          </select>
        </label>
      </div>
      {mayStewardAny(me) && <NewGrant products={products.data ?? []} onDone={grants.reload} />}
      <Card title="Grants given and received">
        {actionError && (
          <p className="notice notice-error" role="alert">
            {actionError}
          </p>
        )}
        {grants.loading && !grants.data && <Spinner />}
        {grants.error && <ErrorBox error={grants.error} />}
        {grants.data && grants.data.length === 0 && <Empty>No grants.</Empty>}
        {grants.data && grants.data.length > 0 && (
          <table className="table">
            <thead>
              <tr>
                <th scope="col">From</th>
                <th scope="col">To</th>
                <th scope="col">Scope</th>
                <th scope="col">Reason</th>
                <th scope="col">Expires</th>
                <th scope="col"><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {grants.data.map((g) => (
                <tr key={g.id} className={g.revokedAt ? "muted" : ""}>
                  <td><ProductBadge product={g.grantorProduct} /></td>
                  <td><ProductBadge product={g.granteeProduct} /></td>
                  <td>
                    <Badge kind="tier">{g.scope}</Badge> <code>{g.namespace}{g.name ? ` / ${g.name}` : ""}</code>
                    {g.maskedOnly && <> <Badge kind="masked">masked only</Badge></>}
                  </td>
                  <td>{g.reason} <small className="muted block">by {g.createdBy}, {fmtTime(g.createdAt)}</small></td>
                  <td className="nowrap">{g.revokedAt ? <Badge kind="status-waived">revoked</Badge> : g.expiresAt ? fmtTime(g.expiresAt) : "never"}</td>
                  <td>{!g.revokedAt && mayStewardProduct(me, g.grantorProduct) && <button className="small" onClick={() => revoke(g)}>Revoke</button>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Card>
    </div>
  );
}

function NewGrant({ products, onDone }: { products: string[]; onDone: () => void }) {
  const [form, setForm] = useState({ granteeProduct: "", scope: "dataset", namespace: "", name: "", reason: "", maskedOnly: false, expires: "" });
  const [error, setError] = useState<string | null>(null);
  const [open, setOpen] = useState(false);
  const set = (k: string, v: string | boolean) => setForm((f) => ({ ...f, [k]: v }));
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      await rest("/api/v1/grants", {
        method: "POST",
        body: JSON.stringify({
          granteeProduct: form.granteeProduct,
          scope: form.scope,
          namespace: form.namespace,
          name: form.name || null,
          reason: form.reason,
          maskedOnly: form.maskedOnly,
          expiresAt: form.expires ? `${form.expires}T23:59:59Z` : null,
        }),
      });
      setOpen(false);
      onDone();
    } catch (err) {
      setError(err instanceof ApiError ? (err.forbidden ? `Not allowed: ${err.message}` : err.message) : String(err));
    }
  };
  if (!open)
    return (
      <div>
        <button className="primary" onClick={() => setOpen(true)}>
          New grant…
        </button>
      </div>
    );
  return (
    <Card title="New grant (stewards of the owning product)">
      <form className="filters grant-form" onSubmit={submit}>
        <label>
          To product
          <select aria-label="To product" required value={form.granteeProduct} onChange={(e) => set("granteeProduct", e.target.value)}>
            <option value="">choose…</option>
            {products.map((p) => (
              <option key={p}>{p}</option>
            ))}
          </select>
        </label>
        <label>
          Scope
          <select aria-label="Scope" value={form.scope} onChange={(e) => set("scope", e.target.value)}>
            <option>dataset</option>
            <option>namespace</option>
            <option>pattern</option>
          </select>
        </label>
        <label>
          Namespace
          <input aria-label="Namespace" required value={form.namespace} onChange={(e) => set("namespace", e.target.value)} placeholder="bigquery" />
        </label>
        {form.scope !== "namespace" && (
          <label>
            {form.scope === "pattern" ? "Name glob" : "Dataset"}
            <input aria-label={form.scope === "pattern" ? "Name glob" : "Dataset"} value={form.name} onChange={(e) => set("name", e.target.value)} placeholder={form.scope === "pattern" ? "cw.payments.*" : "cw.payments.tx_enriched"} />
          </label>
        )}
        <label>
          Reason
          <input required minLength={3} value={form.reason} onChange={(e) => set("reason", e.target.value)} />
        </label>
        <label>
          Expires
          <input type="date" value={form.expires} onChange={(e) => set("expires", e.target.value)} />
        </label>
        <label className="check">
          <input type="checkbox" checked={form.maskedOnly} onChange={(e) => set("maskedOnly", e.target.checked)} /> masked columns only
        </label>
        <button className="primary">Grant</button>
        <button type="button" onClick={() => setOpen(false)}>
          Cancel
        </button>
      </form>
      {error && (
        <p className="notice notice-error" role="alert">
          {error}
        </p>
      )}
    </Card>
  );
}
