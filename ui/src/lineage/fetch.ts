import { ApiError, GqlError, gql, rest } from "../api";
import { CEdge, FieldInfo, GNode, Graph, parseNodeId } from "./model";

export type Direction = "BOTH" | "UPSTREAM" | "DOWNSTREAM";

interface RawField {
  path: string;
  masked: boolean;
  classifications: { tag: string; status: string }[] | null;
  children?: RawField[];
}
interface RawNode {
  id: string;
  kind: "DATASET" | "JOB";
  namespace: string;
  name: string;
  dataset: { product: string | null; tier: string | null; hasPii: boolean | null; fields: RawField[] | null } | null;
  job: { product: string | null } | null;
}

const F = "path masked classifications { tag status }";
const QUERY = `query Lineage($node: NodeInput!, $dir: LineageDirection!, $depth: Int!, $asOf: DateTime) {
  lineage(node: $node, direction: $dir, depth: $depth, asOf: $asOf) {
    root
    nodes { id kind namespace name
      dataset { product tier hasPii fields { ${F} children { ${F} children { ${F} } } } }
      job { product } }
    edges { origin destination }
  }
}`;

function flatten(fields: RawField[] | null): FieldInfo[] | null {
  if (!fields) return null;
  const out: FieldInfo[] = [];
  const walk = (fs: RawField[]) =>
    fs.forEach((f) => {
      const cls = f.classifications ?? [];
      out.push({
        path: f.path,
        masked: f.masked,
        pii: cls.filter((c) => c.status === "PII").map((c) => c.tag),
        maskedTags: cls.filter((c) => c.status === "MASKED").map((c) => c.tag),
      });
      walk(f.children ?? []);
    });
  walk(fields);
  return out;
}

export function toGraph(root: string, raw: { nodes: RawNode[]; edges: { origin: string; destination: string }[] }, errors: GqlError[]): Graph {
  const hiddenIdx = new Set(
    errors.filter((e) => e.extensions?.code === "FORBIDDEN" && e.path?.[0] === "lineage" && e.path?.[1] === "nodes").map((e) => e.path![2] as number),
  );
  const nodes = new Map<string, GNode>();
  raw.nodes.forEach((n, i) => {
    nodes.set(n.id, {
      id: n.id,
      kind: n.kind,
      namespace: n.namespace,
      name: n.name,
      product: n.dataset?.product ?? n.job?.product ?? null,
      tier: n.dataset?.tier ?? null,
      hasPii: n.dataset?.hasPii ?? null,
      fields: flatten(n.dataset?.fields ?? null),
      hidden: hiddenIdx.has(i),
    });
  });
  return { root, nodes, edges: raw.edges.map((e) => ({ source: e.origin, target: e.destination })), columnEdges: [] };
}

export function asOfParam(asOf: string | null): string | null {
  if (!asOf) return null;
  return asOf.length === 10 ? `${asOf}T23:59:59Z` : asOf;
}

export async function fetchLineage(nodeId: string, dir: Direction, depth: number, asOf: string | null): Promise<Graph | null> {
  const node = parseNodeId(nodeId);
  if (!node) throw new Error(`Not a node id: ${nodeId}`);
  const { data, errors } = await gql<{ lineage: { root: string; nodes: RawNode[]; edges: { origin: string; destination: string }[] } | null }>(QUERY, {
    node,
    dir,
    depth,
    asOf: asOfParam(asOf),
  });
  if (!data.lineage) {
    const denied = errors.find((e) => e.extensions?.code === "FORBIDDEN");
    if (denied) throw new ApiError(403, denied.message, "FORBIDDEN");
    return null;
  }
  return toGraph(data.lineage.root, data.lineage, errors);
}

interface RawColumnNode {
  id: string;
  type: string;
  data: {
    namespace: string;
    dataset: string;
    field: string | null;
    inputFields: { namespace: string; dataset: string; field: string; transformationSubtype: string | null; masking: boolean; job: { namespace: string; name: string } | null }[];
  };
}

/** Column edges around a node (REST column-lineage: it takes datasets and jobs alike). */
export async function fetchColumnEdges(nodeId: string, dir: Direction, depth: number, asOf: string | null): Promise<CEdge[]> {
  const params = new URLSearchParams({ nodeId, depth: String(depth), withDownstream: String(dir !== "UPSTREAM") });
  const a = asOfParam(asOf);
  if (a) params.set("asOf", a);
  const res = await rest<{ graph: RawColumnNode[] }>(`/api/v1/column-lineage?${params}`);
  const edges: CEdge[] = [];
  for (const n of res.graph) {
    if (n.type !== "DATASET_FIELD" || !n.data.field) continue;
    for (const i of n.data.inputFields ?? []) {
      edges.push({
        source: `dataset:${i.namespace}:${i.dataset}`,
        sourceField: i.field,
        target: `dataset:${n.data.namespace}:${n.data.dataset}`,
        targetField: n.data.field,
        masking: i.masking,
        subtype: i.transformationSubtype ?? "",
        job: i.job ? `job:${i.job.namespace}:${i.job.name}` : null,
      });
    }
  }
  return edges;
}

