import { describe, expect, it } from "vitest";
import { columnPathThrough, mergeGraphs, parseNodeId, pathThrough, Graph, GNode } from "./model";
import { layeredFast } from "./layout";

const node = (id: string): GNode => ({ id, kind: id.startsWith("job:") ? "JOB" : "DATASET", namespace: "n", name: id, product: null, tier: null, hasPii: null, fields: null, hidden: false });
const graph = (ids: string[], edges: [string, string][]): Graph => ({
  root: ids[0],
  nodes: new Map(ids.map((i) => [i, node(i)])),
  edges: edges.map(([source, target]) => ({ source, target })),
  columnEdges: [],
});

describe("pathThrough", () => {
  // a -> j1 -> b -> j2 -> c, and x -> j3 -> b (b has two upstream branches), d unrelated to c's path
  const edges = [
    ["a", "j1"], ["j1", "b"], ["b", "j2"], ["j2", "c"], ["x", "j3"], ["j3", "b"], ["c", "j4"], ["j4", "d"], ["y", "j5"],
  ].map(([source, target]) => ({ source, target }));

  it("walks the whole upstream and downstream of a node, not siblings' branches", () => {
    const p = pathThrough("j2", edges);
    expect([...p.nodes].sort()).toEqual(["a", "b", "c", "d", "j1", "j2", "j3", "j4", "x"]);
    expect(p.nodes.has("y")).toBe(false);
  });

  it("from a leaf, only upstream", () => {
    const p = pathThrough("a", edges);
    expect(p.nodes.has("x")).toBe(false); // x feeds b, but not a
    expect(p.nodes.has("d")).toBe(true);
    expect(p.edges.has(4)).toBe(false); // x -> j3
  });

  it("terminates on cycles", () => {
    const p = pathThrough("a", [{ source: "a", target: "b" }, { source: "b", target: "a" }]);
    expect([...p.nodes].sort()).toEqual(["a", "b"]);
  });
});

describe("columnPathThrough", () => {
  it("follows columns, not their datasets", () => {
    const edges = [
      { source: "A", sourceField: "email", target: "B", targetField: "email_hash", masking: true, subtype: "", job: null },
      { source: "A", sourceField: "id", target: "B", targetField: "id", masking: false, subtype: "", job: null },
    ];
    const p = columnPathThrough("B", "email_hash", edges);
    expect([...p.nodes].sort()).toEqual(["A#email", "B#email_hash"]);
  });
});

describe("mergeGraphs", () => {
  it("keeps the first graph's root and adds new nodes and edges once", () => {
    const a = graph(["r", "j"], [["r", "j"]]);
    const b = graph(["j", "k"], [["r", "j"], ["j", "k"]]);
    const m = mergeGraphs(a, b);
    expect(m.root).toBe("r");
    expect([...m.nodes.keys()]).toEqual(["r", "j", "k"]);
    expect(m.edges).toHaveLength(2);
  });
});

describe("parseNodeId", () => {
  it("keeps ':' in namespaces", () => {
    expect(parseNodeId("dataset:postgres://db:5432:public.users")).toEqual({ kind: "DATASET", namespace: "postgres://db:5432", name: "public.users" });
    expect(parseNodeId("job:airflow:dag.task")).toEqual({ kind: "JOB", namespace: "airflow", name: "dag.task" });
    expect(parseNodeId("nonsense")).toBeNull();
  });
});

describe("layeredFast", () => {
  it("puts every node right of its upstream and none overlapping in a layer", () => {
    const boxes = ["a", "b", "c", "d"].map((id) => ({ id, width: 100, height: 40 }));
    const pos = layeredFast(boxes, [{ source: "a", target: "b" }, { source: "b", target: "c" }, { source: "a", target: "d" }, { source: "d", target: "c" }]);
    expect(pos.get("b")!.x).toBeGreaterThan(pos.get("a")!.x);
    expect(pos.get("c")!.x).toBeGreaterThan(pos.get("d")!.x);
    expect(pos.get("b")!.x).toBe(pos.get("d")!.x);
    expect(Math.abs(pos.get("b")!.y - pos.get("d")!.y)).toBeGreaterThanOrEqual(40);
  });

  it("places nodes on a cycle too", () => {
    const boxes = ["a", "b"].map((id) => ({ id, width: 10, height: 10 }));
    const pos = layeredFast(boxes, [{ source: "a", target: "b" }, { source: "b", target: "a" }]);
    expect(pos.size).toBe(2);
  });
});
