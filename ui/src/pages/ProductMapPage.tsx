import { useEffect, useMemo, useState } from "react";
import { useNavigate } from "react-router-dom";
import { Background, Controls, Edge, Handle, MarkerType, Node, NodeProps, Position, ReactFlow, ReactFlowProvider } from "@xyflow/react";
import { gql, rest } from "../api";
import { useLoad } from "../hooks";
import { Card, ErrorBox, Spinner, productColor } from "../components";
import { Positions, layout } from "../lineage/layout";

// The product map is drawn from the catalog's own reads: every dataset (paged GraphQL) with its product,
// PII and the products of the jobs that write and read it, plus the unencrypted-transfer findings.
const MAX_PAGES = 30; // 3,000 datasets; past that the map says it is partial

interface Ds {
  namespace: string;
  name: string;
  product: string | null;
  hasPii: boolean | null;
  producers: { namespace: string; name: string; product: string | null }[];
  consumers: { namespace: string; name: string; product: string | null }[];
}
const QUERY = `query Map($after: String) { datasets(first: 100, after: $after) {
  nodes { namespace name product hasPii producers { namespace name product } consumers { namespace name product } }
  pageInfo { hasNextPage endCursor } } }`;

export interface Flow {
  from: string;
  to: string;
  count: number;
  pii: number;
  unencrypted: number;
}
export interface ProductBox {
  product: string;
  datasets: number;
  pii: number;
}

const UNOWNED = "(no product)";

export function productFlows(datasets: Ds[], plaintext: Set<string>): { boxes: ProductBox[]; flows: Flow[] } {
  const boxes = new Map<string, ProductBox>();
  const flows = new Map<string, Flow>();
  const box = (p: string) => boxes.get(p) ?? boxes.set(p, { product: p, datasets: 0, pii: 0 }).get(p)!;
  const add = (from: string, to: string, pii: boolean, clear: boolean) => {
    if (from === to) return;
    const k = `${from}>${to}`;
    const f = flows.get(k) ?? flows.set(k, { from, to, count: 0, pii: 0, unencrypted: 0 }).get(k)!;
    f.count++;
    if (pii) f.pii++;
    if (clear) f.unencrypted++;
    box(from);
    box(to);
  };
  for (const d of datasets) {
    const dp = d.product ?? UNOWNED;
    const b = box(dp);
    b.datasets++;
    if (d.hasPii) b.pii++;
    const key = (j: { namespace: string; name: string }) => `${j.namespace}/${j.name}|${d.namespace}/${d.name}`;
    for (const j of d.producers) add(j.product ?? UNOWNED, dp, !!d.hasPii, plaintext.has(key(j)));
    for (const j of d.consumers) add(dp, j.product ?? UNOWNED, !!d.hasPii, plaintext.has(key(j)));
  }
  return { boxes: [...boxes.values()], flows: [...flows.values()] };
}

type DsPage = { nodes: Ds[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };

async function loadAll(): Promise<{ datasets: Ds[]; partial: boolean }> {
  const all: Ds[] = [];
  let after: string | null = null;
  for (let i = 0; i < MAX_PAGES; i++) {
    const page: DsPage = (await gql<{ datasets: DsPage }>(QUERY, { after })).data.datasets;
    all.push(...page.nodes);
    if (!page.pageInfo.hasNextPage) return { datasets: all, partial: false };
    after = page.pageInfo.endCursor;
  }
  return { datasets: all, partial: true };
}

interface BoxData extends Record<string, unknown> {
  b: ProductBox;
}
function ProductNode({ data }: NodeProps & { data: BoxData }) {
  const c = productColor(data.b.product === UNOWNED ? null : data.b.product);
  return (
    <div className="pnode" style={{ borderColor: c }}>
      <Handle type="target" position={Position.Left} />
      <div className="pnode-name" style={{ color: c }}>
        {data.b.product}
      </div>
      <div className="pnode-stats">
        {data.b.datasets} datasets{data.b.pii > 0 && <span className="lnode-tag pii">{data.b.pii} with PII</span>}
      </div>
      <Handle type="source" position={Position.Right} />
    </div>
  );
}
const types = { product: ProductNode };

export function ProductMapPage() {
  const data = useLoad(async () => {
    const [{ datasets, partial }, clear] = await Promise.all([
      loadAll(),
      rest<{ findings: { subject: { job?: { namespace: string; name: string }; namespace?: string; name?: string } }[] }>("/api/v1/findings?rule=unencrypted-transfer&limit=1000").catch(() => ({ findings: [] })),
    ]);
    const plaintext = new Set(clear.findings.filter((f) => f.subject.job).map((f) => `${f.subject.job!.namespace}/${f.subject.job!.name}|${f.subject.namespace}/${f.subject.name}`));
    return { ...productFlows(datasets, plaintext), partial };
  }, []);
  return (
    <div className="page">
      <div className="page-head">
        <h1>Product map</h1>
        <p className="sub">Products as boxes and the data flowing between them (jobs of one product writing or reading another's datasets): red when the datasets hold unmasked PII, dashed when a transfer is unencrypted.</p>
      </div>
      {data.loading && <Spinner label="Reading the catalog" />}
      {data.error && <ErrorBox error={data.error} />}
      {data.data && (
        <>
          {data.data.partial && <p className="notice notice-hidden">Partial map: the first {MAX_PAGES * 100} datasets.</p>}
          <div className="flow-canvas tall">
            <ReactFlowProvider>
              <MapGraph boxes={data.data.boxes} flows={data.data.flows} />
            </ReactFlowProvider>
          </div>
          <Card title="Flows between products">
            <table className="table">
              <thead>
                <tr>
                  <th scope="col">From</th>
                  <th scope="col">To</th>
                  <th scope="col">Flows</th>
                  <th scope="col">With PII</th>
                  <th scope="col">Unencrypted</th>
                </tr>
              </thead>
              <tbody>
                {data.data.flows.map((f) => (
                  <tr key={f.from + f.to}>
                    <td>{f.from}</td>
                    <td>{f.to}</td>
                    <td>{f.count}</td>
                    <td>{f.pii ? <span className="badge badge-pii">{f.pii}</span> : 0}</td>
                    <td>{f.unencrypted ? <span className="badge badge-sev-high">{f.unencrypted}</span> : 0}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Card>
        </>
      )}
    </div>
  );
}

function MapGraph({ boxes, flows }: { boxes: ProductBox[]; flows: Flow[] }) {
  const navigate = useNavigate();
  const [pos, setPos] = useState<Positions | null>(null);
  useEffect(() => {
    layout(boxes.map((b) => ({ id: b.product, width: 200, height: 70 })), flows.map((f) => ({ source: f.from, target: f.to }))).then(setPos);
  }, [boxes, flows]);
  const nodes: Node<BoxData>[] = useMemo(() => (pos ? boxes.map((b) => ({ id: b.product, type: "product", position: pos.get(b.product) ?? { x: 0, y: 0 }, data: { b } })) : []), [boxes, pos]);
  const edges: Edge[] = flows.map((f) => ({
    id: `${f.from}>${f.to}`,
    source: f.from,
    target: f.to,
    label: `${f.count}${f.pii ? ` · ${f.pii} PII` : ""}${f.unencrypted ? ` · ${f.unencrypted} unencrypted` : ""}`,
    className: `pedge ${f.pii ? "is-pii" : ""} ${f.unencrypted ? "is-clear" : ""}`,
    markerEnd: { type: MarkerType.ArrowClosed, color: f.pii ? "#dc2626" : "#64748b" },
  }));
  if (!pos) return <Spinner label="Laying out" />;
  return (
    <ReactFlow
      nodes={nodes}
      edges={edges}
      nodeTypes={types}
      fitView
      fitViewOptions={{ padding: 0.25, maxZoom: 1.2 }}
      nodesConnectable={false}
      onNodeClick={(_, n) => navigate(`/search?product=${encodeURIComponent(n.id)}`)}
      proOptions={{ hideAttribution: true }}
    >
      <Background gap={24} color="#e2e8f0" />
      <Controls showInteractive={false} />
    </ReactFlow>
  );
}
