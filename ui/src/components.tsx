import { ReactNode } from "react";
import { Link } from "react-router-dom";
import { ApiError } from "./api";

export function ErrorBox({ error }: { error: Error }) {
  const forbidden = error instanceof ApiError && error.forbidden;
  return (
    <div className={`notice ${forbidden ? "notice-hidden" : "notice-error"}`} role="alert">
      <strong>{forbidden ? "Hidden by policy" : "Could not load"}</strong>
      <span>{error.message}</span>
      {forbidden && /internals/.test(error.message) && <small>Another product's internals need a grant from its steward.</small>}
    </div>
  );
}

export function Hidden({ why }: { why: string }) {
  return (
    <div className="notice notice-hidden" role="note">
      <strong>Hidden by policy</strong>
      <span>{why}</span>
    </div>
  );
}

export function Spinner({ label = "Loading" }: { label?: string }) {
  return (
    <div className="spinner" role="status">
      <span className="spinner-dot" /> {label}…
    </div>
  );
}

export function Card({ title, children, actions }: { title: ReactNode; children: ReactNode; actions?: ReactNode }) {
  return (
    <section className="card">
      <header className="card-head">
        <h2>{title}</h2>
        {actions}
      </header>
      <div className="card-body">{children}</div>
    </section>
  );
}

export function Badge({ kind, children, title }: { kind: string; children: ReactNode; title?: string }) {
  return (
    <span className={`badge badge-${kind}`} title={title}>
      {children}
    </span>
  );
}

export function ProductBadge({ product }: { product?: string | null }) {
  if (!product) return <Badge kind="muted">no product</Badge>;
  return (
    <span className="badge badge-product" style={{ ["--pc" as string]: productColor(product) }}>
      {product}
    </span>
  );
}

const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#dc2626", "#4f46e5", "#65a30d", "#c026d3", "#0d9488"];
export function productColor(product?: string | null): string {
  if (!product) return "#64748b";
  let h = 0;
  for (const c of product) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

export function datasetPath(namespace: string, name: string): string {
  return `/datasets/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
}
export function jobPath(namespace: string, name: string): string {
  return `/jobs/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
}
export function lineagePath(kind: "dataset" | "job", namespace: string, name: string, extra = ""): string {
  return `/lineage?node=${encodeURIComponent(`${kind}:${namespace}:${name}`)}${extra}`;
}

export function DatasetLink({ namespace, name }: { namespace: string; name: string }) {
  return (
    <Link to={datasetPath(namespace, name)} className="ref">
      <span className="ref-name">{name}</span>
      <span className="ref-ns">{namespace}</span>
    </Link>
  );
}
export function JobLink({ namespace, name }: { namespace: string; name: string }) {
  return (
    <Link to={jobPath(namespace, name)} className="ref">
      <span className="ref-name">{name}</span>
      <span className="ref-ns">{namespace}</span>
    </Link>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

export function Lock() {
  return (
    <svg className="lock" width="10" height="10" viewBox="0 0 16 16" aria-hidden="true">
      <rect x="2.5" y="7" width="11" height="8" rx="1.5" fill="#475569" />
      <path d="M5 7V5a3 3 0 0 1 6 0v2" stroke="#475569" strokeWidth="1.8" fill="none" />
    </svg>
  );
}
