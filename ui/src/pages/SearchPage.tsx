import { Link, useSearchParams } from "react-router-dom";
import { gql, rest } from "../api";
import { useLoad } from "../hooks";
import { Badge, Empty, ErrorBox, ProductBadge, Spinner, datasetPath, jobPath } from "../components";

interface DatasetHit {
  __typename: "Dataset";
  namespace: string;
  name: string;
  product: string | null;
  tier: string | null;
  hasPii: boolean | null;
  description: string | null;
}
interface JobHit {
  __typename: "Job";
  namespace: string;
  name: string;
  product: string | null;
}
interface FieldHit {
  __typename: "DatasetField";
  path: string;
  type: string | null;
  classifications: { tag: string; status: string }[] | null;
  dataset: { namespace: string; name: string; product: string | null; tier: string | null };
}
type Hit = DatasetHit | JobHit | FieldHit;

const DATASET = "namespace name product tier hasPii description";
// The filters are applied by the server before `first`, so a page holds the first matching hits.
const SEARCH = `query Search($q: String!, $product: String, $tier: String, $hasPii: Boolean) {
 search(query: $q, first: 100, product: $product, tier: $tier, hasPii: $hasPii) {
  __typename
  ... on Dataset { ${DATASET} }
  ... on Job { namespace name product }
  ... on DatasetField { path type classifications { tag status } dataset { namespace name product tier } }
} }`;
const BROWSE = `query Browse { datasets(first: 100) { nodes { __typename ${DATASET} } } }`;
export const TIERS = ["oltp", "analytics", "stream", "file", "api"];

export function SearchPage() {
  const [params, setParams] = useSearchParams();
  const q = params.get("q") ?? "";
  const product = params.get("product") ?? "";
  const tier = params.get("tier") ?? "";
  const pii = params.get("pii") === "1";
  const products = useLoad(() => rest<{ products: string[] }>("/api/v1/policy/products").then((r) => r.products).catch(() => []), []);
  const searching = q.trim() !== "";
  const hits = useLoad(async () => {
    if (!searching) return (await gql<{ datasets: { nodes: Hit[] } }>(BROWSE)).data.datasets.nodes;
    const variables = { q, product: product || null, tier: tier || null, hasPii: pii ? true : null };
    return (await gql<{ search: Hit[] }>(SEARCH, variables)).data.search;
  }, [q, product, tier, pii]);

  const set = (k: string, v: string) => {
    const next = new URLSearchParams(params);
    if (v) next.set(k, v);
    else next.delete(k);
    setParams(next, { replace: true });
  };
  const shown = hits.data ?? [];

  return (
    <div className="page">
      <div className="page-head">
        <h1>{q ? <>Results for “{q}”</> : "Datasets"}</h1>
        <p className="sub">Press <kbd>/</kbd> anywhere to search datasets, jobs and fields by name.</p>
      </div>
      <div className="filters" role="group" aria-label="Filters">
        <label>
          Product
          <select value={product} disabled={!searching} onChange={(e) => set("product", e.target.value)}>
            <option value="">any</option>
            {(products.data ?? []).map((p) => (
              <option key={p}>{p}</option>
            ))}
          </select>
        </label>
        <label>
          Tier
          <select value={tier} disabled={!searching} onChange={(e) => set("tier", e.target.value)}>
            <option value="">any</option>
            {TIERS.map((t) => (
              <option key={t}>{t}</option>
            ))}
          </select>
        </label>
        <label className="check">
          <input type="checkbox" checked={pii} disabled={!searching} onChange={(e) => set("pii", e.target.checked ? "1" : "")} /> holds PII
        </label>
        <span className="count">
          {searching ? (hits.data ? `${shown.length} found` : "") : "Search by name to filter by product, tier or PII."}
        </span>
      </div>
      {hits.loading && <Spinner />}
      {hits.error && <ErrorBox error={hits.error} />}
      {hits.data && shown.length === 0 && <Empty>Nothing matches{q ? ` “${q}”` : ""} with these filters.</Empty>}
      <ul className="results" aria-label="Results">
        {shown.map((h) => (
          <ResultRow key={rowKey(h)} hit={h} />
        ))}
      </ul>
    </div>
  );
}

function rowKey(h: Hit): string {
  return h.__typename === "DatasetField" ? `f:${h.dataset.namespace}:${h.dataset.name}:${h.path}` : `${h.__typename}:${h.namespace}:${h.name}`;
}

function ResultRow({ hit }: { hit: Hit }) {
  if (hit.__typename === "Dataset")
    return (
      <li className="result">
        <Badge kind="dataset">dataset</Badge>
        <Link to={datasetPath(hit.namespace, hit.name)} className="result-name">
          {hit.name}
        </Link>
        <span className="ref-ns">{hit.namespace}</span>
        <span className="grow" />
        {hit.hasPii && <Badge kind="pii">PII</Badge>}
        {hit.tier && <Badge kind="tier">{hit.tier}</Badge>}
        <ProductBadge product={hit.product} />
      </li>
    );
  if (hit.__typename === "Job")
    return (
      <li className="result">
        <Badge kind="job">job</Badge>
        <Link to={jobPath(hit.namespace, hit.name)} className="result-name">
          {hit.name}
        </Link>
        <span className="ref-ns">{hit.namespace}</span>
        <span className="grow" />
        <ProductBadge product={hit.product} />
      </li>
    );
  const piiTags = (hit.classifications ?? []).filter((c) => c.status === "PII");
  return (
    <li className="result">
      <Badge kind="field">field</Badge>
      <Link to={datasetPath(hit.dataset.namespace, hit.dataset.name) + `#field-${hit.path}`} className="result-name">
        {hit.dataset.name}.<strong>{hit.path}</strong>
      </Link>
      <span className="ref-ns">{hit.type ?? ""}</span>
      <span className="grow" />
      {piiTags.map((c) => (
        <Badge kind="pii" key={c.tag}>
          {c.tag}
        </Badge>
      ))}
      <ProductBadge product={hit.dataset.product} />
    </li>
  );
}
