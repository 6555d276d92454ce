// Layout: ELK's layered algorithm in a web worker (elkjs's own worker: the main thread stays responsive),
// and for very large graphs a linear-time layered layout (longest-path layers + one barycenter sweep)
// that keeps the first render of ~2,000 nodes well under a second; ELK's crossing minimisation would take
// several seconds there.
import ELK from "elkjs/lib/elk-api.js";
import elkWorkerUrl from "elkjs/lib/elk-worker.min.js?url";

export interface Box {
  id: string;
  width: number;
  height: number;
}
export type Positions = Map<string, { x: number; y: number }>;

export const ELK_MAX_NODES = 400;
const MAX_ROWS = 40;

let elk: InstanceType<typeof ELK> | null = null;
function getElk() {
  if (!elk) elk = new ELK({ workerUrl: elkWorkerUrl });
  return elk;
}

export async function layout(boxes: Box[], edges: { source: string; target: string }[]): Promise<Positions> {
  if (boxes.length > ELK_MAX_NODES) return layeredFast(boxes, edges);
  const ids = new Set(boxes.map((b) => b.id));
  const res = await getElk().layout({
    id: "root",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "RIGHT",
      "elk.layered.spacing.nodeNodeBetweenLayers": "90",
      "elk.spacing.nodeNode": "28",
      "elk.layered.nodePlacement.strategy": "BRANDES_KOEPF",
      "elk.layered.considerModelOrder.strategy": "NODES_AND_EDGES",
    },
    children: boxes.map((b) => ({ id: b.id, width: b.width, height: b.height })),
    edges: edges
      .filter((e) => ids.has(e.source) && ids.has(e.target) && e.source !== e.target)
      .map((e, i) => ({ id: `e${i}`, sources: [e.source], targets: [e.target] })),
  });
  const pos: Positions = new Map();
  for (const c of res.children ?? []) pos.set(c.id, { x: c.x ?? 0, y: c.y ?? 0 });
  return pos;
}

/** Longest-path layering (cycles broken by visit order), then each layer ordered by its nodes'
 * predecessors' mean position. O(V + E). */
export function layeredFast(boxes: Box[], edges: { source: string; target: string }[]): Positions {
  const ids = new Set(boxes.map((b) => b.id));
  const preds = new Map<string, string[]>();
  const succ = new Map<string, string[]>();
  const indeg = new Map<string, number>();
  for (const b of boxes) preds.set(b.id, []), succ.set(b.id, []), indeg.set(b.id, 0);
  for (const e of edges) {
    if (!ids.has(e.source) || !ids.has(e.target) || e.source === e.target) continue;
    succ.get(e.source)!.push(e.target);
    preds.get(e.target)!.push(e.source);
    indeg.set(e.target, indeg.get(e.target)! + 1);
  }
  const layer = new Map<string, number>();
  const queue = boxes.filter((b) => indeg.get(b.id) === 0).map((b) => b.id);
  const remaining = new Map(indeg);
  let head = 0;
  const placeAll = () => {
    while (head < queue.length) {
      const n = queue[head++];
      const l = layer.get(n) ?? 0;
      layer.set(n, l);
      for (const m of succ.get(n)!) {
        if (!layer.has(m) || layer.get(m)! < l + 1) layer.set(m, Math.max(layer.get(m) ?? 0, l + 1));
        remaining.set(m, remaining.get(m)! - 1);
        if (remaining.get(m) === 0) queue.push(m);
      }
    }
  };
  placeAll();
  for (const b of boxes) {
    // nodes on a cycle: start them where their placed predecessors put them
    if (!queue.includes(b.id) && remaining.get(b.id)! > 0) {
      remaining.set(b.id, 0);
      queue.push(b.id);
      placeAll();
    }
  }
  const layers: string[][] = [];
  for (const b of boxes) {
    const l = layer.get(b.id) ?? 0;
    (layers[l] ??= []).push(b.id);
  }
  const size = new Map(boxes.map((b) => [b.id, b]));
  const order = new Map<string, number>();
  const pos: Positions = new Map();
  let x = 0;
  for (const ids of layers) {
    if (!ids) continue;
    const key = (id: string) => {
      const ps = preds.get(id)!.filter((p) => order.has(p));
      return ps.length ? ps.reduce((s, p) => s + order.get(p)!, 0) / ps.length : Number.MAX_SAFE_INTEGER;
    };
    const keyed = ids.map((id) => [key(id), id] as const).sort((a, b) => a[0] - b[0]);
    // a layer of hundreds (a 5-hop neighbourhood's middle) is wrapped into sub-columns of MAX_ROWS, so the
    // whole graph keeps a shape a screen can show
    for (let start = 0; start < keyed.length; start += MAX_ROWS) {
      const column = keyed.slice(start, start + MAX_ROWS);
      let y = 0;
      let width = 0;
      column.forEach(([, id], i) => {
        const b = size.get(id)!;
        order.set(id, start + i);
        pos.set(id, { x, y });
        y += b.height + 24;
        width = Math.max(width, b.width);
      });
      for (const [, id] of column) pos.get(id)!.y -= y / 2; // centred vertically around 0
      x += width + (start + MAX_ROWS < keyed.length ? 40 : 90);
    }
  }
  return pos;
}
