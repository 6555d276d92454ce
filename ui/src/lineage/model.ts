// The lineage explorer's data model, kept free of React so its logic is testable on its own: merging
// graphs fetched around different nodes (expand on click), and walking a node's or a column's whole
// upstream/downstream path for the hover highlight.

export interface FieldInfo {
  path: string;
  masked: boolean;
  pii: string[]; // tags held unmasked
  maskedTags: string[]; // tags held as a masked derivative
}

export interface GNode {
  id: string;
  kind: "DATASET" | "JOB";
  namespace: string;
  name: string;
  product: string | null;
  tier: string | null;
  hasPii: boolean | null;
  fields: FieldInfo[] | null; // null: hidden (another product's internals) or not asked for
  hidden: boolean; // its internals are another product's and this key has no grant
}

export interface GEdge {
  source: string;
  target: string;
}

/** A column edge, between dataset nodes (`source`/`target` are dataset node ids). */
export interface CEdge {
  source: string;
  sourceField: string;
  target: string;
  targetField: string;
  masking: boolean;
  subtype: string;
  job: string | null;
}

export interface Graph {
  root: string;
  nodes: Map<string, GNode>;
  edges: GEdge[];
  columnEdges: CEdge[];
}

export function emptyGraph(root: string): Graph {
  return { root, nodes: new Map(), edges: [], columnEdges: [] };
}

export function mergeGraphs(a: Graph, b: Graph): Graph {
  const nodes = new Map(a.nodes);
  for (const [id, n] of b.nodes) if (!nodes.has(id)) nodes.set(id, n);
  const seen = new Set(a.edges.map((e) => `${e.source}>${e.target}`));
  const edges = [...a.edges];
  for (const e of b.edges) if (!seen.has(`${e.source}>${e.target}`)) edges.push(e), seen.add(`${e.source}>${e.target}`);
  const cseen = new Set(a.columnEdges.map(ckey));
  const columnEdges = [...a.columnEdges];
  for (const e of b.columnEdges) if (!cseen.has(ckey(e))) columnEdges.push(e), cseen.add(ckey(e));
  return { root: a.root, nodes, edges, columnEdges };
}

const ckey = (e: CEdge) => `${e.source}#${e.sourceField}>${e.target}#${e.targetField}`;

/** Every node upstream and downstream of `start` (itself included), and the edges on those paths. */
export function pathThrough(start: string, edges: { source: string; target: string }[]): { nodes: Set<string>; edges: Set<number> } {
  const out = new Map<string, number[]>();
  const inn = new Map<string, number[]>();
  edges.forEach((e, i) => {
    (out.get(e.source) ?? out.set(e.source, []).get(e.source)!).push(i);
    (inn.get(e.target) ?? inn.set(e.target, []).get(e.target)!).push(i);
  });
  const nodes = new Set([start]);
  const onPath = new Set<number>();
  const walk = (adj: Map<string, number[]>, next: (i: number) => string) => {
    const stack = [start];
    const seen = new Set([start]);
    while (stack.length) {
      const n = stack.pop()!;
      for (const i of adj.get(n) ?? []) {
        onPath.add(i);
        const m = next(i);
        if (!seen.has(m)) seen.add(m), nodes.add(m), stack.push(m);
      }
    }
  };
  walk(out, (i) => edges[i].target);
  walk(inn, (i) => edges[i].source);
  return { nodes, edges: onPath };
}

/** Column-level path: nodes are `datasetId#field`. */
export function columnPathThrough(datasetId: string, field: string, edges: CEdge[]) {
  const flat = edges.map((e) => ({ source: `${e.source}#${e.sourceField}`, target: `${e.target}#${e.targetField}` }));
  return pathThrough(`${datasetId}#${field}`, flat);
}

export function parseNodeId(id: string): { kind: "DATASET" | "JOB"; namespace: string; name: string } | null {
  const m = /^(dataset|job):(.*):([^:]+)$/.exec(id);
  if (!m) return null;
  return { kind: m[1] === "job" ? "JOB" : "DATASET", namespace: m[2], name: m[3] };
}
