import { useMemo } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { Background, Controls, Edge, Handle, Node, NodeProps, Position, ReactFlow, ReactFlowProvider } from "@xyflow/react";
import { rest } from "../api";
import { useLoad } from "../hooks";
import { Badge, Card, Empty, ErrorBox, Spinner, datasetPath, jobPath } from "../components";
import { layeredFast } from "../lineage/layout";

interface Ref {
  namespace: string;
  dataset: string;
  field: string | null;
}
interface Cls {
  tag: string;
  status: string;
  source: string;
  confidence: number;
}
interface Hop {
  depth: number;
  from: Ref;
  to: Ref;
  job: { namespace: string; name: string } | null;
  transformation: { type: string; subtype: string | null; masking: boolean };
  effect: string;
  maskingPoint: boolean;
  targetClassifications: Cls[];
}
interface Flow {
  origin: Ref & { classifications: Cls[] };
  hops: Hop[];
  omittedHops: number;
}

const refId = (r: Ref) => `${r.namespace}|${r.dataset}|${r.field ?? ""}`;

export function PiiFlowPage() {
  const [params] = useSearchParams();
  const ns = params.get("ns") ?? "";
  const dataset = params.get("dataset") ?? "";
  const field = params.get("field") ?? "";
  const flow = useLoad(
    () => rest<Flow>(`/api/v1/pii/flow?${new URLSearchParams({ namespace: ns, dataset, field })}`),
    [ns, dataset, field],
  );
  if (!field) return <Empty>Open a dataset and choose “PII flow” on one of its classified columns.</Empty>;
  return (
    <div className="page">
      <div className="page-head">
        <div className="crumbs">
          <Badge kind="field">PII flow</Badge> <Link to={datasetPath(ns, dataset)}>{dataset}</Link> <span className="ref-ns">{ns}</span>
        </div>
        <h1>
          Where <code>{field}</code> goes
        </h1>
        {flow.data && (
          <div className="meta">
            {flow.data.origin.classifications.map((c) => (
              <span key={c.tag} className={`chip chip-${c.status.toLowerCase()}`}>
                {c.tag} <small>{c.source.toLowerCase()}</small>
              </span>
            ))}
            <span>{flow.data.hops.length} hops</span>
            <span>{flow.data.hops.filter((h) => h.maskingPoint).length} masking points</span>
            {flow.data.omittedHops > 0 && (
              <span className="notice notice-hidden inline" role="note">
                {flow.data.omittedHops} hop{flow.data.omittedHops > 1 ? "s" : ""} hidden: they go into or out of datasets this key may not read
              </span>
            )}
          </div>
        )}
      </div>
      {flow.loading && <Spinner />}
      {flow.error && <ErrorBox error={flow.error} />}
      {flow.data && (
        <>
          <div className="flow-canvas">
            <ReactFlowProvider>
              <FlowGraph flow={flow.data} />
            </ReactFlowProvider>
          </div>
          <Card title="Hop by hop">
            {flow.data.hops.length === 0 ? <Empty>The value goes nowhere else.</Empty> : <HopTable hops={flow.data.hops} />}
          </Card>
        </>
      )}
    </div>
  );
}

interface ColData extends Record<string, unknown> {
  r: Ref;
  status: "pii" | "masked" | "none";
  origin: boolean;
}

function ColNode({ data }: NodeProps & { data: ColData }) {
  return (
    <div className={`fnode fnode-${data.status} ${data.origin ? "is-root" : ""}`}>
      <Handle type="target" position={Position.Left} />
      <div className="fnode-field">{data.r.field ?? "(dataset)"}</div>
      <div className="fnode-ds">{data.r.dataset}</div>
      <Handle type="source" position={Position.Right} />
    </div>
  );
}
const flowTypes = { col: ColNode };

function FlowGraph({ flow }: { flow: Flow }) {
  const { nodes, edges } = useMemo(() => {
    const status = new Map<string, ColData["status"]>();
    const refs = new Map<string, Ref>();
    refs.set(refId(flow.origin), flow.origin);
    status.set(refId(flow.origin), "pii");
    for (const h of flow.hops) {
      refs.set(refId(h.from), h.from);
      refs.set(refId(h.to), h.to);
      const s = h.targetClassifications.some((c) => c.status.toUpperCase() === "PII") ? "pii" : h.targetClassifications.some((c) => c.status.toUpperCase() === "MASKED") || h.maskingPoint ? "masked" : "none";
      status.set(refId(h.to), s);
    }
    const boxes = [...refs.keys()].map((id) => ({ id, width: 200, height: 52 }));
    const es = flow.hops.map((h) => ({ source: refId(h.from), target: refId(h.to) }));
    const pos = layeredFast(boxes, es);
    const nodes: Node<ColData>[] = [...refs.entries()].map(([id, r]) => ({
      id,
      type: "col",
      position: pos.get(id)!,
      data: { r, status: status.get(id) ?? "none", origin: id === refId(flow.origin) },
    }));
    const edges: Edge[] = flow.hops.map((h, i) => ({
      id: `h${i}`,
      source: refId(h.from),
      target: refId(h.to),
      label: h.maskingPoint ? "masked" : h.effect.toLowerCase(),
      className: `fedge fedge-${h.effect.toLowerCase()} ${h.maskingPoint ? "is-masking" : ""}`,
      animated: h.effect === "CARRIES" || h.effect === "carries",
    }));
    return { nodes, edges };
  }, [flow]);
  return (
    <ReactFlow nodes={nodes} edges={edges} nodeTypes={flowTypes} fitView fitViewOptions={{ padding: 0.2, maxZoom: 1.1 }} nodesConnectable={false} proOptions={{ hideAttribution: true }}>
      <Background gap={24} color="#e2e8f0" />
      <Controls showInteractive={false} />
    </ReactFlow>
  );
}

function HopTable({ hops }: { hops: Hop[] }) {
  return (
    <table className="table">
      <thead>
        <tr>
          <th scope="col">Hop</th>
          <th scope="col">From</th>
          <th scope="col">To</th>
          <th scope="col">Job</th>
          <th scope="col">What it does</th>
          <th scope="col">Target holds</th>
        </tr>
      </thead>
      <tbody>
        {hops.map((h, i) => (
          <tr key={i} className={h.maskingPoint ? "row-masking" : ""}>
            <td>{h.depth}</td>
            <td>
              <Link to={datasetPath(h.from.namespace, h.from.dataset)}>{h.from.dataset}</Link>.<code>{h.from.field}</code>
            </td>
            <td>
              <Link to={datasetPath(h.to.namespace, h.to.dataset)}>{h.to.dataset}</Link>.<code>{h.to.field}</code>
            </td>
            <td>{h.job ? <Link to={jobPath(h.job.namespace, h.job.name)}>{h.job.name}</Link> : "—"}</td>
            <td>
              <Badge kind={`effect-${h.effect.toLowerCase()}`}>{h.maskingPoint ? "masking point" : h.effect.toLowerCase()}</Badge>{" "}
              <small className="muted">
                {h.transformation.type}/{h.transformation.subtype}
              </small>
            </td>
            <td>
              {h.targetClassifications.map((c) => (
                <span key={c.tag} className={`chip chip-${c.status.toLowerCase()}`}>
                  {c.tag}
                </span>
              ))}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
