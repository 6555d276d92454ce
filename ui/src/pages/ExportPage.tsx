import { FormEvent, useState } from "react";
import { ApiError, download, rest } from "../api";
import { Card, ErrorBox } from "../components";
import { Verification, verifyBundle } from "../verify";

export function ExportPage() {
  const [asOf, setAsOf] = useState("");
  const [product, setProduct] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [result, setResult] = useState<{ filename: string; size: number; url: string; v: Verification } | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setResult(null);
    try {
      const qs = new URLSearchParams();
      if (asOf) qs.set("asOf", `${asOf}T23:59:59Z`);
      if (product) qs.set("product", product);
      const { blob, filename } = await download(`/api/v1/exports?${qs}`);
      const keys = await rest<{ keys: { keyId: string; publicKey: string }[] }>("/api/v1/signing-keys");
      const v = await verifyBundle(blob, keys.keys);
      setResult({ filename, size: blob.size, url: URL.createObjectURL(blob), v });
    } catch (err) {
      setError(err instanceof ApiError && err.forbidden ? new ApiError(403, `${err.message} — exports are for auditors and admins.`) : (err as Error));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="page">
      <div className="page-head">
        <h1>Compliance export</h1>
        <p className="sub">A signed bundle of the catalog as of an instant: inventory, lineage, classifications, findings, grants, denials and the audit trail. Auditors and admins only.</p>
      </div>
      <Card title="New bundle">
        <form className="filters" onSubmit={submit}>
          <label>
            As of (end of day, UTC)
            <input type="date" value={asOf} onChange={(e) => setAsOf(e.target.value)} />
          </label>
          <label>
            Product
            <input value={product} onChange={(e) => setProduct(e.target.value)} placeholder="all" size={12} />
          </label>
          <button className="primary" disabled={busy}>
            {busy ? "Building…" : "Build and verify"}
          </button>
        </form>
        {error && <ErrorBox error={error} />}
      </Card>
      {result && (
        <Card
          title="Bundle"
          actions={
            <a className="button primary" href={result.url} download={result.filename}>
              Download {result.filename}
            </a>
          }
        >
          <div className={`verdict ${result.v.problems.length ? "bad" : "good"}`} role="status">
            {result.v.problems.length === 0 ? "✔ Verified" : "✘ Does not verify"}
            <small>
              {result.v.signatureOk === true && `Ed25519 signature by ${result.v.keyId} is valid · `}
              {result.v.signatureOk === null && `signature not checked (this browser lacks Ed25519) · `}
              {result.v.files.filter((f) => f.ok).length}/{result.v.files.length} files match the manifest · {(result.size / 1024).toFixed(1)} KiB · as of {result.v.asOf}
            </small>
          </div>
          {result.v.problems.length > 0 && (
            <ul className="diff">
              {result.v.problems.map((p) => (
                <li className="del" key={p}>
                  {p}
                </li>
              ))}
            </ul>
          )}
          <details>
            <summary>Files</summary>
            <ul className="plain mono">
              {result.v.files.map((f) => (
                <li key={f.name}>
                  {f.ok ? "✔" : "✘"} {f.name}
                </li>
              ))}
            </ul>
          </details>
          <p className="hint">
            Offline, with the audit chain too: <code>catalog export verify {result.filename} --public-key {result.v.keyId}</code>
          </p>
        </Card>
      )}
    </div>
  );
}
