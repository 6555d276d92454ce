import { Link, useParams } from "react-router-dom";
import { enc, fmtDuration, fmtTime, forbiddenAt, gql, rest } from "../api";
import { useLoad } from "../hooks";
import { Badge, Card, DatasetLink, Empty, ErrorBox, Hidden, ProductBadge, Spinner, lineagePath } from "../components";
import { Finding, FindingsTable } from "../findings";

interface DsRef {
  namespace: string;
  name: string;
  product: string | null;
  tier: string | null;
}
interface Run {
  id: string;
  state: string;
  startedAt: string | null;
  endedAt: string | null;
  firstSeen: string;
  facets: Record<string, { message?: string; programmingLanguage?: string; stackTrace?: string }>;
}
interface Job {
  namespace: string;
  name: string;
  product: string | null;
  firstSeen: string;
  lastSeen: string;
  owners: { name: string }[];
  inputs: DsRef[];
  outputs: DsRef[];
  facets: Record<string, { query?: string; url?: string }> | null;
  runs: { nodes: Run[] } | null;
}
const QUERY = `query Job($ns: String!, $name: String!) { job(namespace: $ns, name: $name) {
  namespace name product firstSeen lastSeen owners { name }
  inputs { namespace name product tier } outputs { namespace name product tier }
  facets
  runs(first: 20) { nodes { id state startedAt endedAt firstSeen facets } }
} }`;

export function JobPage() {
  const { namespace = "", name = "" } = useParams();
  const job = useLoad(() => gql<{ job: Job | null }>(QUERY, { ns: namespace, name }), [namespace, name]);
  const findings = useLoad(
    () => rest<{ findings: Finding[] }>(`/api/v1/findings/jobs/${enc(namespace)}/${enc(name)}?limit=200`).then((r) => r.findings),
    [namespace, name],
  );
  if (job.loading) return <Spinner />;
  if (job.error) return <ErrorBox error={job.error} />;
  const j = job.data!.data.job;
  const errors = job.data!.errors;
  if (!j) return <Empty>No job {name} in {namespace}.</Empty>;
  const sql = j.facets?.sql?.query;
  const hiddenRuns = forbiddenAt(errors, "job", "runs");
  return (
    <div className="page">
      <div className="page-head">
        <div className="crumbs">
          <Badge kind="job">job</Badge> <span className="ref-ns">{j.namespace}</span>
        </div>
        <h1>{j.name}</h1>
        <div className="meta">
          <ProductBadge product={j.product} />
          {j.owners.length > 0 && <span>Owners: {j.owners.map((o) => o.name).join(", ")}</span>}
          <span className="muted">
            seen {fmtTime(j.firstSeen)} → {fmtTime(j.lastSeen)}
          </span>
          <span className="grow" />
          <Link className="button" to={lineagePath("job", j.namespace, j.name)}>
            Lineage
          </Link>
        </div>
      </div>
      <div className="grid-2">
        <Card title="Inputs">
          {j.inputs.length ? <DsList items={j.inputs} /> : <Empty>Reads nothing.</Empty>}
        </Card>
        <Card title="Outputs">
          {j.outputs.length ? <DsList items={j.outputs} /> : <Empty>Writes nothing.</Empty>}
        </Card>
      </div>
      <Card title="Runs">
        {hiddenRuns ? <Hidden why={hiddenRuns} /> : <Runs runs={j.runs?.nodes ?? []} />}
      </Card>
      <Card title="SQL">
        {forbiddenAt(errors, "job", "facets") ? <Hidden why={forbiddenAt(errors, "job", "facets")!} /> : sql ? <pre className="sql">{sql}</pre> : <Empty>No SQL facet.</Empty>}
      </Card>
      <Card title={`Findings${findings.data ? ` (${findings.data.length})` : ""}`}>
        {findings.error ? <ErrorBox error={findings.error} /> : findings.data ? <FindingsTable findings={findings.data} onChanged={findings.reload} /> : <Spinner />}
      </Card>
    </div>
  );
}

function DsList({ items }: { items: DsRef[] }) {
  return (
    <ul className="plain">
      {items.map((d) => (
        <li key={d.namespace + d.name}>
          <DatasetLink namespace={d.namespace} name={d.name} /> {d.tier && <Badge kind="tier">{d.tier}</Badge>} <ProductBadge product={d.product} />
        </li>
      ))}
    </ul>
  );
}

function Runs({ runs }: { runs: Run[] }) {
  if (!runs.length) return <Empty>No runs.</Empty>;
  return (
    <table className="table">
      <thead>
        <tr>
          <th scope="col">State</th>
          <th scope="col">Run id</th>
          <th scope="col">Started</th>
          <th scope="col">Duration</th>
          <th scope="col">Error</th>
        </tr>
      </thead>
      <tbody>
        {runs.map((r) => (
          <tr key={r.id}>
            <td>
              <Badge kind={`run-${r.state.toLowerCase()}`}>{r.state}</Badge>
            </td>
            <td>
              <code className="muted">{r.id}</code>
            </td>
            <td className="nowrap">{fmtTime(r.startedAt ?? r.firstSeen)}</td>
            <td>{fmtDuration(r.startedAt, r.endedAt)}</td>
            <td>{r.facets?.errorMessage?.message ?? ""}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
