import { FormEvent, useCallback, useEffect, useMemo, useRef, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { Background, Controls, Edge, MiniMap, Node, ReactFlow, ReactFlowProvider, useReactFlow } from "@xyflow/react";
import { ApiError, rest } from "../api";
import { ErrorBox, Spinner, datasetPath, jobPath, productColor, ProductBadge } from "../components";
import { Direction, fetchColumnEdges, fetchLineage } from "../lineage/fetch";
import { Positions, layout } from "../lineage/layout";
import { CEdge, Graph, columnPathThrough, mergeGraphs, parseNodeId, pathThrough } from "../lineage/model";
import { NodeData, Overlay, boxSize, nodeTypes } from "../lineage/nodes";

type Level = "table" | "column";
const LARGE_GRAPH = 400;
type Hover = { id: string; field: string | null } | null;

export function LineagePage() {
  const [params, setParams] = useSearchParams();
  const node = params.get("node") ?? "";
  if (!node) return <PickRoot />;
  return (
    <ReactFlowProvider>
      <Explorer key={node} params={params} setParams={setParams} />
    </ReactFlowProvider>
  );
}

function PickRoot() {
  return (
    <div className="page">
      <div className="page-head">
        <h1>Lineage explorer</h1>
        <p className="sub">
          Open a dataset or job (search with <kbd>/</kbd>) and choose <em>Lineage</em>, or paste a node id such as{" "}
          <code>dataset:bigquery:cw.payments.tx_enriched</code>.
        </p>
      </div>
      <RootForm />
    </div>
  );
}

function RootForm() {
  const [, setParams] = useSearchParams();
  const [v, setV] = useState("");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (parseNodeId(v.trim())) setParams({ node: v.trim() });
  };
  return (
    <form onSubmit={submit} className="filters">
      <label>
        Node id <input value={v} onChange={(e) => setV(e.target.value)} size={60} placeholder="dataset:{namespace}:{name}" />
      </label>
      <button className="primary">Show</button>
    </form>
  );
}

function Explorer({ params, setParams }: { params: URLSearchParams; setParams: (p: URLSearchParams, o?: { replace?: boolean }) => void }) {
  const node = params.get("node")!;
  const depth = Math.max(1, Math.min(10, Number(params.get("depth") ?? 2) || 2));
  const direction = (params.get("direction")?.toUpperCase() as Direction) || "BOTH";
  const level: Level = params.get("level") === "column" ? "column" : "table";
  const asOf = params.get("asOf");
  const overlay = (params.get("overlay") as Overlay) || "pii";
  const expand = useMemo(() => (params.get("expand") ?? "").split(",").filter(Boolean), [params]);

  const [graph, setGraph] = useState<Graph | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [loading, setLoading] = useState(true);
  const [positions, setPositions] = useState<Positions | null>(null);
  const [hover, setHover] = useState<Hover>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [refused, setRefused] = useState<string[]>([]);
  const { fitView } = useReactFlow();

  const update = useCallback(
    (changes: Record<string, string | null>) => {
      const next = new URLSearchParams(params);
      for (const [k, v] of Object.entries(changes)) v ? next.set(k, v) : next.delete(k);
      setParams(next, { replace: true });
    },
    [params, setParams],
  );

  // Fetch: the root's graph and one hop around every expanded node; the column edges (around the root and
  // each expanded node) follow without holding the first render back.
  const [columnEdges, setColumnEdges] = useState<CEdge[]>([]);
  useEffect(() => {
    let live = true;
    setLoading(true);
    setError(null);
    const cols = Promise.all([node, ...expand].map((id) => fetchColumnEdges(id, direction, depth, asOf).catch(() => [])));
    (async () => {
      const denied: string[] = [];
      const [base, ...extra] = await Promise.all([
        fetchLineage(node, direction, depth, asOf),
        ...expand.map((id) =>
          fetchLineage(id, "BOTH", 1, asOf).catch((e: Error) => {
            denied.push(`${parseNodeId(id)?.name}: ${e.message}`);
            return null;
          }),
        ),
      ]);
      if (!base) throw new ApiError(404, `No node ${node}${asOf ? ` as of ${asOf}` : ""}.`);
      if (live) setRefused(denied);
      let g = base;
      for (const x of extra) if (x) g = mergeGraphs(g, x);
      return g;
    })().then(
      (g) => live && (setGraph(g), setLoading(false)),
      (e: Error) => live && (setError(e), setLoading(false)),
    );
    cols.then((c) => {
      if (!live) return;
      const seen = new Set<string>();
      setColumnEdges(c.flat().filter((e) => {
        const k = `${e.source}#${e.sourceField}>${e.target}#${e.targetField}`;
        return !seen.has(k) && (seen.add(k), true);
      }));
    });
    return () => {
      live = false;
    };
  }, [node, direction, depth, asOf, expand]);

  // Layout off the main thread (ELK in its worker) whenever the graph or the level changes.
  useEffect(() => {
    if (!graph) return;
    let live = true;
    const boxes = [...graph.nodes.values()].map((g) => ({ id: g.id, ...boxSize(g, level) }));
    layout(boxes, graph.edges).then((p) => {
      if (!live) return;
      setPositions(p);
      (window as unknown as { __lineageRendered?: number }).__lineageRendered = performance.now();
    });
    return () => {
      live = false;
    };
  }, [graph, level]);

  // Small graphs are fitted to the view; a large one opens on its root at a readable zoom (the minimap and
  // zoom controls reach the rest), so the first render draws tens of nodes, not thousands.
  const large = (graph?.nodes.size ?? 0) > LARGE_GRAPH;
  const canvas = useRef<HTMLDivElement>(null);
  const initialViewport = useMemo(() => {
    if (!graph || !positions || !large) return undefined;
    const root = positions.get(graph.root) ?? { x: 0, y: 0 };
    const box = canvas.current?.getBoundingClientRect() ?? { width: 1200, height: 800 };
    const zoom = 0.8;
    return { x: box.width / 2 - (root.x + 130) * zoom, y: box.height / 2 - (root.y + 29) * zoom, zoom };
  }, [graph, positions, large]);
  useEffect(() => {
    if (positions && !large) requestAnimationFrame(() => fitView({ padding: 0.15, maxZoom: 1.2 }));
  }, [positions, fitView, large]);

  // Unencrypted transfers (the `unencrypted-transfer` findings this key may read), drawn on their edges.
  const [plaintext, setPlaintext] = useState<Set<string>>(new Set());
  useEffect(() => {
    rest<{ findings: { subject: { job?: { namespace: string; name: string }; namespace?: string; name?: string; direction?: string } }[] }>(
      "/api/v1/findings?rule=unencrypted-transfer&status=open&limit=1000",
    )
      .then((r) => {
        const keys = r.findings
          .filter((f) => f.subject.job)
          .map((f) => {
            const job = `job:${f.subject.job!.namespace}:${f.subject.job!.name}`;
            const ds = `dataset:${f.subject.namespace}:${f.subject.name}`;
            return f.subject.direction === "input" ? `${ds}>${job}` : `${job}>${ds}`;
          });
        setPlaintext(new Set(keys));
      })
      .catch(() => setPlaintext(new Set()));
  }, []);

  const withColumns = useMemo(() => new Set(columnEdges.flatMap((e) => [e.source, e.target])), [columnEdges]);

  const path = useMemo(() => {
    if (!graph || !hover) return null;
    if (hover.field && level === "column") {
      const p = columnPathThrough(hover.id, hover.field, columnEdges);
      const fields = new Map<string, Set<string>>();
      for (const k of p.nodes) {
        const i = k.lastIndexOf("#");
        const ds = k.slice(0, i);
        (fields.get(ds) ?? fields.set(ds, new Set()).get(ds)!).add(k.slice(i + 1));
      }
      return { nodes: new Set(fields.keys()), edges: new Set<number>(), colEdges: p.edges, fields };
    }
    const p = pathThrough(hover.id, graph.edges);
    return { nodes: p.nodes, edges: p.edges, colEdges: new Set<number>(), fields: null };
  }, [graph, hover, level, columnEdges]);

  const onField = useCallback((id: string, field: string | null) => setHover(field ? { id, field } : null), []);

  const rfNodes: Node<NodeData>[] = useMemo(() => {
    if (!graph || !positions) return [];
    return [...graph.nodes.values()].map((g) => ({
      id: g.id,
      type: g.kind === "JOB" ? "job" : "dataset",
      position: positions.get(g.id) ?? { x: 0, y: 0 },
      ...boxSize(g, level), // known sizes: the minimap and visibility culling need no measuring first
      selected: g.id === selected,
      data: {
        g,
        level,
        overlay,
        root: g.id === graph.root,
        dim: !!path && !path.nodes.has(g.id),
        hlFields: path?.fields?.get(g.id) ?? (path?.fields ? new Set() : null),
        colLineage: withColumns.has(g.id),
        expanded: expand.includes(g.id),
        onField,
      },
    }));
  }, [graph, positions, level, overlay, path, withColumns, expand, onField, selected]);

  const rfEdges: Edge[] = useMemo(() => {
    if (!graph || !positions) return [];
    const productEdge = (s: string, t: string) => {
      const a = graph.nodes.get(s)?.product;
      const b = graph.nodes.get(t)?.product;
      return overlay === "product" && a && b && a !== b;
    };
    const table: Edge[] = graph.edges.map((e, i) => ({
      id: `t${i}`,
      source: e.source,
      target: e.target,
      label: plaintext.has(`${e.source}>${e.target}`) ? "unencrypted" : undefined,
      className: [
        plaintext.has(`${e.source}>${e.target}`) ? "is-clear" : "",
        "ledge",
        level === "column" ? "is-faint" : "",
        path ? (path.edges.has(i) ? "is-hl" : "is-dim") : "",
        productEdge(e.source, e.target) ? "is-boundary" : "",
      ].join(" "),
    }));
    if (level !== "column") return table;
    const cols: Edge[] = columnEdges
      .map((e, i) => ({ e, i }))
      .filter(({ e }) => graph.nodes.get(e.source)?.fields?.some((f) => f.path === e.sourceField) && graph.nodes.get(e.target)?.fields?.some((f) => f.path === e.targetField))
      .map(({ e, i }) => ({
        id: `c${i}`,
        source: e.source,
        target: e.target,
        sourceHandle: `out:${e.sourceField}`,
        targetHandle: `in:${e.targetField}`,
        label: undefined,
        className: ["cedge", e.masking ? "is-masking" : "", overlay === "pii" && isPii(graph, e.source, e.sourceField) && !e.masking ? "is-pii" : "", path ? (path.colEdges.has(i) ? "is-hl" : "is-dim") : ""].join(" "),
      }));
    return [...table, ...cols];
  }, [graph, positions, level, path, overlay, columnEdges, plaintext]);

  const onNodeClick = useCallback(
    (_: unknown, n: Node) => {
      setSelected(n.id);
      if (n.id !== graph?.root && !expand.includes(n.id)) update({ expand: [...expand, n.id].join(",") });
    },
    [graph, expand, update],
  );

  const sel = selected ? graph?.nodes.get(selected) : null;
  return (
    <div className="explorer">
      <div className="toolbar" role="toolbar" aria-label="Lineage view">
        <div className="toolbar-title">
          <span className="muted">Lineage of</span> <strong>{parseNodeId(node)?.name}</strong>
        </div>
        <label>
          Direction
          <select value={direction} onChange={(e) => update({ direction: e.target.value.toLowerCase() })}>
            <option value="BOTH">both</option>
            <option value="UPSTREAM">upstream</option>
            <option value="DOWNSTREAM">downstream</option>
          </select>
        </label>
        <label>
          Depth
          <input type="number" min={1} max={10} value={depth} onChange={(e) => update({ depth: e.target.value })} style={{ width: 56 }} />
        </label>
        <div className="seg" role="radiogroup" aria-label="Level">
          {(["table", "column"] as Level[]).map((l) => (
            <button key={l} role="radio" aria-checked={level === l} className={level === l ? "on" : ""} onClick={() => update({ level: l === "table" ? null : l })}>
              {l === "table" ? "Tables" : "Columns"}
            </button>
          ))}
        </div>
        <label>
          Overlay
          <select value={overlay} onChange={(e) => update({ overlay: e.target.value })}>
            <option value="pii">PII</option>
            <option value="product">Products</option>
            <option value="none">none</option>
          </select>
        </label>
        <label>
          As of
          <input type="date" value={asOf ?? ""} onChange={(e) => update({ asOf: e.target.value || null })} />
        </label>
        {expand.length > 0 && (
          <button className="small" onClick={() => update({ expand: null })}>
            Collapse ({expand.length})
          </button>
        )}
        <span className="grow" />
        <span className="muted small">{graph ? `${graph.nodes.size} nodes · ${graph.edges.length} edges` : ""}</span>
      </div>
      <div className="canvas" ref={canvas}>
        {loading && !graph && <Spinner label="Loading lineage" />}
        {error && <ErrorBox error={error} />}
        {graph && positions && (
          <div className="canvas-fill">
          <ReactFlow
            nodes={rfNodes}
            edges={rfEdges}
            nodeTypes={nodeTypes}
            onNodeClick={onNodeClick}
            onNodeMouseEnter={(_, n) => setHover((h) => (h?.field ? h : { id: n.id, field: null }))}
            onNodeMouseLeave={() => setHover(null)}
            nodesDraggable={!large}
            nodesConnectable={false}
            onlyRenderVisibleElements={large}
            defaultViewport={initialViewport}
            minZoom={0.05}
            maxZoom={2}
            proOptions={{ hideAttribution: true }}
          >
            <Background gap={24} color="#e2e8f0" />
            <Controls showInteractive={false} />
            <MiniMap pannable zoomable nodeColor={(n) => miniColor(n as Node<NodeData>, overlay)} ariaLabel="Minimap" />
          </ReactFlow>
          </div>
        )}
        {refused.length > 0 && (
          <div className="notice notice-hidden refused" role="note">
            <strong>Not expanded</strong>
            {refused.map((r) => (
              <span key={r}>{r}</span>
            ))}
          </div>
        )}
        <Legend overlay={overlay} level={level} />
        {sel && <Details g={sel} onClose={() => setSelected(null)} />}
      </div>
    </div>
  );
}

function isPii(graph: Graph, ds: string, field: string): boolean {
  return !!graph.nodes.get(ds)?.fields?.find((f) => f.path === field)?.pii.length;
}

function miniColor(n: Node<NodeData>, overlay: Overlay): string {
  const g = n.data.g;
  if (overlay === "product") return productColor(g.product);
  if (overlay === "pii" && g.hasPii) return "#ef4444";
  return g.kind === "JOB" ? "#94a3b8" : "#60a5fa";
}

function Legend({ overlay, level }: { overlay: Overlay; level: Level }) {
  return (
    <div className="legend" aria-label="Legend">
      {overlay === "pii" && (
        <>
          <span><i className="sw sw-pii" /> unmasked PII</span>
          <span><i className="sw sw-masked" /> masked derivative</span>
          {level === "column" && <span><i className="ln ln-mask" /> masking edge</span>}
        </>
      )}
      {overlay === "product" && <span><i className="ln ln-boundary" /> crosses a product boundary</span>}
      <span><i className="ln ln-clear" /> unencrypted transfer</span>
      <span className="muted">hover: path · click: expand</span>
    </div>
  );
}

function Details({ g, onClose }: { g: NonNullable<ReturnType<Graph["nodes"]["get"]>>; onClose: () => void }) {
  const [, setParams] = useSearchParams();
  return (
    <aside className="details" aria-label="Selected node">
      <button className="link close" onClick={onClose} aria-label="Close">
        ×
      </button>
      <div className="muted small">{g.kind.toLowerCase()} · {g.namespace}</div>
      <h2>{g.name}</h2>
      <p>
        <ProductBadge product={g.product} /> {g.tier && <span className="badge badge-tier">{g.tier}</span>}
      </p>
      {g.hidden && <p className="notice notice-hidden">Another product's dataset: its columns need a grant from its steward.</p>}
      {g.fields && <p className="small">{g.fields.length} columns · {g.fields.filter((f) => f.pii.length).length} with PII</p>}
      <p className="row">
        <Link className="button" to={g.kind === "JOB" ? jobPath(g.namespace, g.name) : datasetPath(g.namespace, g.name)}>
          Open page
        </Link>
        <button className="button" onClick={() => setParams((p) => { const n = new URLSearchParams(p); n.set("node", g.id); n.delete("expand"); return n; })}>
          Center here
        </button>
      </p>
    </aside>
  );
}
