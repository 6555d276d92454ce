import { FormEvent, useState } from "react";
import { ApiError, fmtTime, rest } from "./api";
import { Badge, Empty } from "./components";
import { mayStewardProduct, useMe } from "./session";

export interface Finding {
  id: number;
  rule: string;
  severity: string;
  status: string;
  subjectDisplay: string;
  product: string | null;
  evidence: Record<string, unknown>;
  firstSeen: string;
  lastSeen: string;
  waivedBy: string | null;
  waiverReason: string | null;
  waivedUntil: string | null;
}

export const SEVERITIES = ["critical", "high", "medium", "low"];

export function FindingsTable({ findings, onChanged, actions = true }: { findings: Finding[]; onChanged?: () => void; actions?: boolean }) {
  const [open, setOpen] = useState<number | null>(null);
  if (findings.length === 0) return <Empty>No findings.</Empty>;
  return (
    <table className="table findings">
      <thead>
        <tr>
          <th scope="col">Severity</th>
          <th scope="col">Rule</th>
          <th scope="col">Subject</th>
          <th scope="col">Status</th>
          <th scope="col">Last seen</th>
          {actions && <th scope="col"><span className="sr-only">Actions</span></th>}
        </tr>
      </thead>
      <tbody>
        {findings.map((f) => (
          <FindingRow key={f.id} f={f} open={open === f.id} toggle={() => setOpen(open === f.id ? null : f.id)} onChanged={onChanged} actions={actions} />
        ))}
      </tbody>
    </table>
  );
}

function FindingRow({ f, open, toggle, onChanged, actions }: { f: Finding; open: boolean; toggle: () => void; onChanged?: () => void; actions: boolean }) {
  // Waiving is a steward's of the finding's product (or an admin's); the API still decides.
  const mayWaive = mayStewardProduct(useMe(), f.product);
  const reason = typeof f.evidence?.reason === "string" ? (f.evidence.reason as string) : null;
  return (
    <>
      <tr className={`sev-row sev-${f.severity}`}>
        <td>
          <Badge kind={`sev-${f.severity}`}>{f.severity}</Badge>
        </td>
        <td>
          <code>{f.rule}</code>
        </td>
        <td>
          <div>{f.subjectDisplay}</div>
          {reason && <small className="muted">{reason}</small>}
        </td>
        <td>
          <Badge kind={`status-${f.status}`}>{f.status}</Badge>
          {f.status === "waived" && (
            <small className="muted block">
              by {f.waivedBy}
              {f.waivedUntil ? ` until ${fmtTime(f.waivedUntil)}` : ""}: {f.waiverReason}
            </small>
          )}
        </td>
        <td className="nowrap">{fmtTime(f.lastSeen)}</td>
        {actions && (
          <td className="nowrap">
            {mayWaive && (
              <button className="small" onClick={toggle} aria-expanded={open}>
                {f.status === "waived" ? "Un-waive…" : "Waive…"}
              </button>
            )}
          </td>
        )}
      </tr>
      {open && mayWaive && (
        <tr>
          <td colSpan={6}>
            <WaiveForm f={f} onDone={() => { toggle(); onChanged?.(); }} />
          </td>
        </tr>
      )}
    </>
  );
}

function WaiveForm({ f, onDone }: { f: Finding; onDone: () => void }) {
  const [reason, setReason] = useState("");
  const [until, setUntil] = useState("");
  const [error, setError] = useState<string | null>(null);
  const waived = f.status === "waived";
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      if (waived) await rest(`/api/v1/findings/${f.id}/unwaive`, { method: "POST", body: JSON.stringify({ reason: reason || undefined }) });
      else
        await rest(`/api/v1/findings/${f.id}/waive`, {
          method: "POST",
          body: JSON.stringify({ reason, until: until ? new Date(until + "T23:59:59Z").toISOString() : null }),
        });
      onDone();
    } catch (err) {
      setError(err instanceof ApiError ? (err.forbidden ? `Not allowed: ${err.message}` : err.message) : String(err));
    }
  };
  return (
    <form className="waive" onSubmit={submit} aria-label={waived ? "Lift the waiver" : "Waive the finding"}>
      {!waived && (
        <>
          <label>
            Reason
            <input value={reason} onChange={(e) => setReason(e.target.value)} required minLength={3} placeholder="Why this is accepted" />
          </label>
          <label>
            Expires
            <input type="date" value={until} onChange={(e) => setUntil(e.target.value)} />
          </label>
        </>
      )}
      <button type="submit" className="primary small">
        {waived ? "Lift waiver" : "Waive"}
      </button>
      {error && (
        <span className="notice notice-error inline" role="alert">
          {error}
        </span>
      )}
    </form>
  );
}
