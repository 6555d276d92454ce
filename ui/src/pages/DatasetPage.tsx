import { Fragment, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { enc, fmtTime, forbiddenAt, gql, rest } from "../api";
import { useLoad } from "../hooks";
import { Badge, Card, Empty, ErrorBox, Hidden, JobLink, ProductBadge, Spinner, lineagePath } from "../components";
import { Finding, FindingsTable } from "../findings";

interface Classification {
  tag: string;
  source: string;
  category: string | null;
  confidence: number;
  status: string;
  depth: number;
  path: string[] | null;
}
interface Field {
  path: string;
  name: string;
  type: string | null;
  description: string | null;
  masked: boolean;
  classifications: Classification[] | null;
  children: Field[];
}
interface JobRef {
  namespace: string;
  name: string;
  product: string | null;
}
interface Dataset {
  namespace: string;
  name: string;
  description: string | null;
  product: string | null;
  tier: string | null;
  sourceUri: string | null;
  hasPii: boolean | null;
  firstSeen: string;
  lastSeen: string;
  owners: { name: string; type: string | null }[];
  fields: Field[] | null;
  versions: { id: string; firstSeen: string; lastSeen: string; fields: { name: string; type?: string }[] }[] | null;
  producers: JobRef[];
  consumers: JobRef[];
  facets: Record<string, unknown> | null;
}

const CLS = "classifications { tag source category confidence status depth path }";
const FIELD = `path name type description masked ${CLS}`;
const QUERY = `query Dataset($ns: String!, $name: String!) { dataset(namespace: $ns, name: $name) {
  namespace name description product tier sourceUri hasPii firstSeen lastSeen
  owners { name type }
  fields { ${FIELD} children { ${FIELD} children { ${FIELD} children { ${FIELD} } } } }
  versions(first: 10) { id firstSeen lastSeen fields }
  producers { namespace name product } consumers { namespace name product }
  facets
} }`;

export function DatasetPage() {
  const { namespace = "", name = "" } = useParams();
  const ds = useLoad(() => gql<{ dataset: Dataset | null }>(QUERY, { ns: namespace, name }), [namespace, name]);
  const findings = useLoad(
    () => rest<{ findings: Finding[] }>(`/api/v1/findings/datasets/${enc(namespace)}/${enc(name)}?limit=200`).then((r) => r.findings),
    [namespace, name],
  );
  if (ds.loading) return <Spinner />;
  if (ds.error) return <ErrorBox error={ds.error} />;
  const d = ds.data!.data.dataset;
  const errors = ds.data!.errors;
  if (!d) return <Empty>No dataset {name} in {namespace}.</Empty>;
  const hiddenFields = forbiddenAt(errors, "dataset", "fields");
  return (
    <div className="page">
      <div className="page-head">
        <div className="crumbs">
          <Badge kind="dataset">dataset</Badge> <span className="ref-ns">{d.namespace}</span>
        </div>
        <h1>{d.name}</h1>
        {d.description && <p className="sub">{d.description}</p>}
        <div className="meta">
          <ProductBadge product={d.product} />
          {d.tier && <Badge kind="tier">{d.tier}</Badge>}
          {d.hasPii && <Badge kind="pii">holds PII</Badge>}
          <span>
            Owners: {d.owners.length ? d.owners.map((o) => o.name).join(", ") : <span className="muted">none declared</span>}
          </span>
          <span className="muted">
            seen {fmtTime(d.firstSeen)} → {fmtTime(d.lastSeen)}
          </span>
          <span className="grow" />
          <Link className="button" to={lineagePath("dataset", d.namespace, d.name)}>
            Lineage
          </Link>
          <Link className="button" to={lineagePath("dataset", d.namespace, d.name, "&level=column")}>
            Column lineage
          </Link>
        </div>
      </div>
      <div className="grid-2">
        <Card title="Schema">
          {hiddenFields ? (
            <Hidden why={hiddenFields} />
          ) : d.fields && d.fields.length ? (
            <SchemaTable dataset={d} />
          ) : (
            <Empty>No schema reported.</Empty>
          )}
        </Card>
        <div className="stack">
          <Card title="Producers and consumers">
            <h3 className="mini">Written by</h3>
            {d.producers.length ? (
              <ul className="plain">{d.producers.map((j) => <li key={j.namespace + j.name}><JobLink {...j} /> <ProductBadge product={j.product} /></li>)}</ul>
            ) : (
              <Empty>No job writes it.</Empty>
            )}
            <h3 className="mini">Read by</h3>
            {d.consumers.length ? (
              <ul className="plain">{d.consumers.map((j) => <li key={j.namespace + j.name}><JobLink {...j} /> <ProductBadge product={j.product} /></li>)}</ul>
            ) : (
              <Empty>No job reads it.</Empty>
            )}
          </Card>
          <Card title="Schema versions">
            {forbiddenAt(errors, "dataset", "versions") ? <Hidden why={forbiddenAt(errors, "dataset", "versions")!} /> : <Versions versions={d.versions ?? []} />}
          </Card>
        </div>
      </div>
      <Card title={`Findings${findings.data ? ` (${findings.data.length})` : ""}`}>
        {findings.error ? <ErrorBox error={findings.error} /> : findings.data ? <FindingsTable findings={findings.data} onChanged={findings.reload} /> : <Spinner />}
      </Card>
      <Card title="Facets">
        {forbiddenAt(errors, "dataset", "facets") ? (
          <Hidden why={forbiddenAt(errors, "dataset", "facets")!} />
        ) : d.facets && Object.keys(d.facets).length ? (
          <Facets facets={d.facets} />
        ) : (
          <Empty>No facets.</Empty>
        )}
      </Card>
    </div>
  );
}

function SchemaTable({ dataset }: { dataset: Dataset }) {
  const rows: { f: Field; level: number }[] = [];
  const walk = (fs: Field[], level: number) => fs.forEach((f) => { rows.push({ f, level }); walk(f.children ?? [], level + 1); });
  walk(dataset.fields ?? [], 0);
  return (
    <table className="table schema">
      <thead>
        <tr>
          <th scope="col">Column</th>
          <th scope="col">Type</th>
          <th scope="col">Classification</th>
          <th scope="col"><span className="sr-only">Actions</span></th>
        </tr>
      </thead>
      <tbody>
        {rows.map(({ f, level }) => (
          <tr key={f.path} id={`field-${f.path}`}>
            <td style={{ paddingLeft: 10 + level * 18 }}>
              <code className="col-name">{f.name}</code>
              {f.description && <small className="muted block">{f.description}</small>}
            </td>
            <td>{f.masked ? <Badge kind="masked" title="Read through a masked-only grant: details withheld">masked</Badge> : <code className="muted">{f.type}</code>}</td>
            <td>
              {(f.classifications ?? []).map((c) => (
                <ClassificationChip key={c.tag} c={c} />
              ))}
            </td>
            <td className="nowrap">
              {(f.classifications ?? []).length > 0 && (
                <Link className="small-link" to={`/pii-flow?ns=${enc(dataset.namespace)}&dataset=${enc(dataset.name)}&field=${enc(f.path)}`}>
                  PII flow →
                </Link>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function ClassificationChip({ c }: { c: Classification }) {
  const title = [
    `${c.tag} (${c.status.toLowerCase()})`,
    `source: ${c.source.toLowerCase()}, confidence ${Math.round(c.confidence * 100)}%`,
    c.path ? `propagated via: ${c.path.join(" → ")}` : "",
  ]
    .filter(Boolean)
    .join("\n");
  return (
    <span className={`chip chip-${c.status.toLowerCase()}`} title={title}>
      {c.tag}
      <small>
        {c.source.toLowerCase()} · {Math.round(c.confidence * 100)}%
      </small>
      {c.path && <small className="chip-path">via {c.path.length - 1} hop{c.path.length > 2 ? "s" : ""}: {c.path[0]}</small>}
    </span>
  );
}

function Versions({ versions }: { versions: NonNullable<Dataset["versions"]> }) {
  const [open, setOpen] = useState<string | null>(versions[0]?.id ?? null);
  if (!versions.length) return <Empty>No schema versions.</Empty>;
  return (
    <ol className="versions">
      {versions.map((v, i) => {
        const prev = versions[i + 1];
        const diff = prev ? diffFields(prev.fields, v.fields) : null;
        return (
          <li key={v.id}>
            <button className="link" onClick={() => setOpen(open === v.id ? null : v.id)} aria-expanded={open === v.id}>
              {i === 0 ? "current" : `v${versions.length - i}`} · {fmtTime(v.firstSeen)} · {v.fields.length} fields
              {diff && (
                <span className="diffsum">
                  {diff.added.length > 0 && <span className="add"> +{diff.added.length}</span>}
                  {diff.removed.length > 0 && <span className="del"> −{diff.removed.length}</span>}
                  {diff.changed.length > 0 && <span className="chg"> ~{diff.changed.length}</span>}
                </span>
              )}
            </button>
            {open === v.id && diff && (
              <ul className="diff">
                {diff.added.map((f) => <li className="add" key={"a" + f}>+ {f}</li>)}
                {diff.removed.map((f) => <li className="del" key={"r" + f}>− {f}</li>)}
                {diff.changed.map((f) => <li className="chg" key={"c" + f}>~ {f}</li>)}
                {!diff.added.length && !diff.removed.length && !diff.changed.length && <li className="muted">same fields as the previous version</li>}
              </ul>
            )}
            {open === v.id && !diff && <p className="muted small">first version: {v.fields.map((f) => f.name).join(", ")}</p>}
          </li>
        );
      })}
    </ol>
  );
}

export function diffFields(before: { name: string; type?: string }[], after: { name: string; type?: string }[]) {
  const b = new Map(before.map((f) => [f.name, f.type ?? ""]));
  const a = new Map(after.map((f) => [f.name, f.type ?? ""]));
  return {
    added: [...a.keys()].filter((k) => !b.has(k)),
    removed: [...b.keys()].filter((k) => !a.has(k)),
    changed: [...a.keys()].filter((k) => b.has(k) && b.get(k) !== a.get(k)).map((k) => `${k}: ${b.get(k)} → ${a.get(k)}`),
  };
}

function Facets({ facets }: { facets: Record<string, unknown> }) {
  return (
    <div className="facets">
      {Object.entries(facets).map(([k, v]) => (
        <Fragment key={k}>
          <details>
            <summary>
              <code>{k}</code>
            </summary>
            <pre>{JSON.stringify(v, null, 2)}</pre>
          </details>
        </Fragment>
      ))}
    </div>
  );
}
