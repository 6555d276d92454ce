import { memo } from "react";
import { Handle, NodeProps, Position, ReactFlowState, useStore } from "@xyflow/react";
import { Lock, productColor } from "../components";
import { GNode } from "./model";

export type Overlay = "none" | "pii" | "product";
export const ROW = 24;
export const HEAD = 58;

export interface NodeData extends Record<string, unknown> {
  g: GNode;
  level: "table" | "column";
  overlay: Overlay;
  root: boolean;
  dim: boolean;
  hlFields: Set<string> | null;
  colLineage: boolean;
  expanded: boolean;
  onField: (id: string, field: string | null) => void;
}

// Zoomed far out (a whole large graph in view) a node is a coloured bar with its name: a tenth of the DOM,
// so fitting 2,000 nodes stays quick; the details come back when zooming in.
const farOut = (s: ReactFlowState) => s.transform[2] < 0.3;

function MiniNode({ g, className, style }: { g: GNode; className: string; style?: React.CSSProperties }) {
  return (
    <div className={`${className} lnode-mini`} style={style}>
      <Handle type="target" position={Position.Left} className="h-table" />
      <span className="lnode-name">{g.name}</span>
      <Handle type="source" position={Position.Right} className="h-table" />
    </div>
  );
}

export function boxSize(g: GNode, level: "table" | "column"): { width: number; height: number } {
  if (g.kind === "JOB") return { width: 220, height: 46 };
  if (level === "column" && g.fields && g.fields.length) return { width: 260, height: HEAD + g.fields.length * ROW + 6 };
  return { width: 260, height: HEAD };
}

function piiState(g: GNode): "pii" | "masked" | null {
  if (g.hasPii) return "pii";
  if (g.fields?.some((f) => f.maskedTags.length > 0)) return "masked";
  return null;
}

export const DatasetNode = memo(function DatasetNode({ data }: NodeProps & { data: NodeData }) {
  const { g, level, overlay, root, dim, hlFields, colLineage, expanded, onField } = data;
  const far = useStore(farOut);
  const pii = piiState(g);
  const color = productColor(g.product);
  const cls = [
    "lnode",
    "lnode-dataset",
    root ? "is-root" : "",
    dim ? "is-dim" : "",
    overlay === "pii" && pii ? `ov-${pii}` : "",
  ].join(" ");
  const style = overlay === "product" ? { borderColor: color, boxShadow: `inset 4px 0 0 ${color}` } : undefined;
  if (far && level === "table") return <MiniNode g={g} className={cls} style={style} />;
  return (
    <div className={cls} style={style}>
      <Handle type="target" position={Position.Left} className="h-table" />
      <div className="lnode-head">
        <span className="lnode-icon" aria-hidden="true">▦</span>
        <span className="lnode-name" title={`${g.namespace} / ${g.name}`}>
          {g.name}
        </span>
        {colLineage && (
          <span className="lnode-tag col" title="Has column lineage">
            cols
          </span>
        )}
        {pii && (
          <span className={`lnode-tag ${pii}`} title={pii === "pii" ? "Holds unmasked PII" : "Holds masked PII derivatives"}>
            {pii === "pii" ? "PII" : "masked"}
          </span>
        )}
      </div>
      <div className="lnode-sub">
        <span className="lnode-ns">{g.namespace}</span>
        {g.product && (
          <span className="lnode-prod" style={{ color }}>
            {g.product}
          </span>
        )}
        {g.hidden && <span className="lnode-lock" title="Another product's internals: columns need a grant"><Lock />name only</span>}
        {!expanded && !root && <span className="lnode-more" title="Click to expand">+</span>}
      </div>
      {level === "column" && g.fields && g.fields.length > 0 && (
        <ul className="lnode-fields">
          {g.fields.map((f) => {
            const on = hlFields?.has(f.path);
            const fcls = ["lfield", on ? "is-hl" : "", hlFields && !on ? "is-dim" : "", overlay === "pii" && f.pii.length ? "ov-pii" : "", overlay === "pii" && !f.pii.length && f.maskedTags.length ? "ov-masked" : ""].join(" ");
            return (
              <li key={f.path} className={fcls} onMouseEnter={() => onField(g.id, f.path)} onMouseLeave={() => onField(g.id, null)}>
                <Handle type="target" position={Position.Left} id={`in:${f.path}`} className="h-field" />
                <span>{f.path}</span>
                {f.masked && <span className="lfield-tag">masked</span>}
                {f.pii.length > 0 && <span className="lfield-tag pii">{f.pii[0].replace(/^PII\./, "")}</span>}
                {!f.pii.length && f.maskedTags.length > 0 && <span className="lfield-tag masked">{f.maskedTags[0].replace(/^PII\./, "")}*</span>}
                <Handle type="source" position={Position.Right} id={`out:${f.path}`} className="h-field" />
              </li>
            );
          })}
        </ul>
      )}
      <Handle type="source" position={Position.Right} className="h-table" />
    </div>
  );
});

export const JobNode = memo(function JobNode({ data }: NodeProps & { data: NodeData }) {
  const { g, overlay, root, dim, expanded } = data;
  const far = useStore(farOut);
  const color = productColor(g.product);
  const cls = ["lnode", "lnode-job", root ? "is-root" : "", dim ? "is-dim" : ""].join(" ");
  if (far) return <MiniNode g={g} className={cls} />;
  return (
    <div
      className={["lnode", "lnode-job", root ? "is-root" : "", dim ? "is-dim" : ""].join(" ")}
      style={overlay === "product" ? { borderColor: color, boxShadow: `inset 4px 0 0 ${color}` } : undefined}
    >
      <Handle type="target" position={Position.Left} className="h-table" />
      <div className="lnode-head">
        <span className="lnode-icon" aria-hidden="true">⚙</span>
        <span className="lnode-name" title={`${g.namespace} / ${g.name}`}>
          {g.name}
        </span>
        {!expanded && !root && <span className="lnode-more" title="Click to expand">+</span>}
      </div>
      <div className="lnode-sub">
        <span className="lnode-ns">{g.namespace}</span>
      </div>
      <Handle type="source" position={Position.Right} className="h-table" />
    </div>
  );
});

export const nodeTypes = { dataset: DatasetNode, job: JobNode };
