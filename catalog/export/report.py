"""The bundle's human-readable report: one self-contained HTML page (no scripts, no external assets) with
the export's facts, a summary of every section, a picture of the flows drawn as inline SVG, and samples.

The picture is laid out here rather than by a graph library: datasets are placed in columns by their
longest path from a source (left to right follows the data), ordered within a column by the mean position
of their upstream neighbours to keep crossings down, and edges are smooth curves coloured by what flows.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from catalog.export.sections import SectionResult

NODE_W, NODE_H = 250, 40
COL_GAP, ROW_GAP = 120, 16
MARGIN_X, MARGIN_TOP = 30, 70
PALETTE = [
    "#dbeafe", "#dcfce7", "#fef9c3", "#fae8ff", "#ffedd5",
    "#e0f2fe", "#f3e8ff", "#ecfccb", "#fce7f3", "#e2e8f0",
]  # fmt: skip
TIER_BORDER = {
    "oltp": "#1d4ed8",
    "analytics": "#15803d",
    "stream": "#a16207",
    "file": "#6b21a8",
    "api": "#be185d",
}
EDGE_COLOURS = {"pii": "#dc2626", "masked": "#f59e0b", "plain": "#94a3b8"}
REPORT_SECTIONS = (
    "pii/flows",
    "findings/findings",
    "access/grants",
    "access/denials",
    "pii/inventory",
    "audit/audit_log",
)
# Sections whose report table shows chosen columns in full (wrapped, never cut): an auditor must tell from
# the report alone what each finding is about. The CSV/JSON files keep every column.
REPORT_COLUMNS = {
    "findings/findings": (
        "rule",
        "severity",
        "status",
        "product",
        "subject",
        "reason",
        "run_id",
        "uri",
        "first_seen",
        "waiver_reason",
    ),
}


@dataclass(frozen=True, slots=True)
class FlowGraph:
    nodes: dict[int, dict[str, Any]]  # dataset id -> namespace, name, product, tier
    edges: list[tuple[int, int, bool, bool]]  # source, target, carries PII, masked
    pii_only: bool


def _tier(node: dict[str, Any]) -> str:
    if node.get("tier"):
        return str(node["tier"])
    ns = str(node["namespace"])
    if ns.startswith(("postgres", "mysql", "jdbc")):
        return "oltp"
    if ns.startswith(("kafka", "pulsar", "kinesis")):
        return "stream"
    if ns.startswith(("bigquery", "snowflake", "redshift", "databricks")):
        return "analytics"
    if ns.startswith(("s3", "gs", "file", "hdfs", "abfss")):
        return "file"
    return ""


def _fill(product: str | None) -> str:
    if not product:
        return "#f8fafc"
    return PALETTE[int(hashlib.sha256(product.encode()).hexdigest(), 16) % len(PALETTE)]


def _short(value: str, limit: int) -> str:
    return value if len(value) <= limit else "…" + value[-(limit - 1) :]


def layout(graph: FlowGraph) -> dict[int, tuple[float, float]]:
    """Top-left corner of each node: columns by longest path from a source, rows by barycentre."""
    ids = sorted(graph.nodes)
    layer = dict.fromkeys(ids, 0)
    # Bellman-Ford style relaxation, capped so a cycle cannot push nodes off to infinity.
    cap = max(len(ids) - 1, 0)
    for _ in range(len(ids)):
        changed = False
        for s, t, _pii, _masked in graph.edges:
            if s in layer and t in layer and layer[t] < layer[s] + 1 <= cap:
                layer[t] = layer[s] + 1
                changed = True
        if not changed:
            break
    columns: dict[int, list[int]] = {}
    for node in ids:
        columns.setdefault(layer[node], []).append(node)
    preds: dict[int, list[int]] = {n: [] for n in ids}
    for s, t, _pii, _masked in graph.edges:
        if s in preds and t in preds:
            preds[t].append(s)
    order: dict[int, float] = {}
    for col in sorted(columns):
        nodes = columns[col]
        if col == 0:
            nodes.sort(key=lambda n: (graph.nodes[n].get("product") or "", graph.nodes[n]["name"]))
        else:
            nodes.sort(
                key=lambda n: (
                    sum(order.get(p, 0.0) for p in preds[n]) / len(preds[n]) if preds[n] else 1e9,
                    graph.nodes[n]["name"],
                )
            )
        for i, n in enumerate(nodes):
            order[n] = float(i)
    return {
        n: (MARGIN_X + col * (NODE_W + COL_GAP), MARGIN_TOP + i * (NODE_H + ROW_GAP))
        for col, nodes in columns.items()
        for i, n in enumerate(nodes)
    }


def render_svg(graph: FlowGraph) -> str:
    if not graph.nodes:
        return '<p class="empty">No flows existed at this instant.</p>'
    pos = layout(graph)
    width = max(x for x, _ in pos.values()) + NODE_W + MARGIN_X
    height = max(y for _, y in pos.values()) + NODE_H + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="Data flows between datasets" '
        'font-family="system-ui, -apple-system, Segoe UI, sans-serif">',
        "<defs>",
    ]
    for kind, colour in EDGE_COLOURS.items():
        out.append(
            f'<marker id="arrow-{kind}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        )
    out.append("</defs>")
    out.extend(_legend(graph))
    # Plain flows first, PII on top, so the red lines are never hidden under grey ones.
    for s, t, pii, masked in sorted(graph.edges, key=lambda e: (e[2] and not e[3], e[2])):
        if s not in pos or t not in pos:
            continue
        kind = "masked" if pii and masked else "pii" if pii else "plain"
        (sx, sy), (tx, ty) = pos[s], pos[t]
        x1, y1 = sx + NODE_W, sy + NODE_H / 2
        x2, y2 = tx, ty + NODE_H / 2
        if x2 <= x1:  # a flow back to an earlier column: loop round below the boxes
            drop = max(sy, ty) + NODE_H + 12
            path = f"M{x1:.0f},{y1:.0f} C{x1 + 60:.0f},{drop:.0f} {x2 - 60:.0f},{drop:.0f} {x2:.0f},{y2:.0f}"
        else:
            bend = (x2 - x1) / 2
            path = f"M{x1:.0f},{y1:.0f} C{x1 + bend:.0f},{y1:.0f} {x2 - bend:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
        width_px = 2.4 if kind == "pii" else 1.8 if kind == "masked" else 1.2
        dash = ' stroke-dasharray="6 4"' if kind == "masked" else ""
        label = f"{graph.nodes[s]['name']} → {graph.nodes[t]['name']}"
        out.append(
            f'<path d="{path}" fill="none" stroke="{EDGE_COLOURS[kind]}" stroke-width="{width_px}"{dash} '
            f'marker-end="url(#arrow-{kind})" opacity="0.9"><title>{html.escape(label)}</title></path>'
        )
    for node_id, (x, y) in pos.items():
        node = graph.nodes[node_id]
        tier = _tier(node)
        border = TIER_BORDER.get(tier, "#475569")
        product = node.get("product") or ""
        full = f"{node['namespace']}/{node['name']}"
        out.append(
            f"<g><title>{html.escape(full)}{' — product ' + html.escape(product) if product else ''}</title>"
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="7" fill="{_fill(product)}" '
            f'stroke="{border}" stroke-width="1.6"/>'
            f'<text x="{x + 9:.0f}" y="{y + 17:.0f}" font-size="12.5" font-weight="600" fill="#0f172a">'
            f"{html.escape(_short(str(node['name']), 34))}</text>"
            f'<text x="{x + 9:.0f}" y="{y + 32:.0f}" font-size="10.5" fill="#475569">'
            f"{html.escape(_short((product + ' · ' if product else '') + (tier + ' · ' if tier else '') + str(node['namespace']), 40))}"
            "</text></g>"
        )
    out.append("</svg>")
    return "\n".join(out)


def _legend(graph: FlowGraph) -> list[str]:
    items = [
        ("pii", "PII, unmasked"),
        ("masked", "PII, masked"),
        ("plain", "no PII" if graph.pii_only else "flow"),
    ]
    out = []
    x = MARGIN_X
    for kind, label in items:
        dash = ' stroke-dasharray="6 4"' if kind == "masked" else ""
        out.append(
            f'<line x1="{x}" y1="22" x2="{x + 34}" y2="22" stroke="{EDGE_COLOURS[kind]}" stroke-width="2.4"{dash}/>'
            f'<text x="{x + 42}" y="26" font-size="12" fill="#334155">{label}</text>'
        )
        x += 150
    for tier, colour in TIER_BORDER.items():
        out.append(
            f'<rect x="{x}" y="13" width="18" height="16" rx="3" fill="#fff" stroke="{colour}" stroke-width="1.6"/>'
            f'<text x="{x + 24}" y="26" font-size="12" fill="#334155">{tier}</text>'
        )
        x += 100
    out.append(
        f'<text x="{MARGIN_X}" y="50" font-size="11" fill="#64748b">Boxes are datasets (fill colour: owning '
        "product; border: tier). Data flows left to right. Hover for full names.</text>"
    )
    return out


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px 32px; color: #0f172a; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #e2e8f0; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #e2e8f0; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f1f5f9; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.meta td:first-child { font-weight: 600; background: #f8fafc; }
.figure { overflow-x: auto; border: 1px solid #e2e8f0; border-radius: 8px; padding: 8px; background: #fff; }
.note { color: #64748b; font-size: 13px; } code { font-size: 12px; }
.omitted { color: #94a3b8; }
td.full { overflow-wrap: anywhere; max-width: 480px; }
"""


def render_report(manifest: dict[str, Any], results: list[SectionResult], graph: FlowGraph) -> str:
    e = html.escape
    chain = manifest["auditChain"]
    period = manifest["period"]
    meta = [
        ("As of", manifest["asOf"]),
        ("Period", f"{period['from'] or 'beginning'} → {period['to'] or manifest['asOf']}"),
        ("Product filter", manifest["filters"]["product"] or "all products"),
        (
            "Generated",
            f"{manifest['createdAt']} by {manifest['generator']['name']} {manifest['generator']['version']}",
        ),
        ("Audit chain head", f"row {chain['headSeq']} · {chain['headHash']}"),
        ("Signed with", f"{manifest['signature']['keyId']} ({manifest['signature']['algorithm']})"),
    ]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Compliance export as of {e(manifest['asOf'])}</title><style>{CSS}</style></head><body>",
        "<h1>Compliance export</h1>",
        "<p class='note'>Verify this bundle with <code>catalog export verify BUNDLE --public-key KEY</code>: "
        "it checks the Ed25519 signature of <code>manifest.json</code> and the SHA-256 of every file.</p>",
        "<table class='meta'>",
        *(f"<tr><td>{e(k)}</td><td>{e(str(v))}</td></tr>" for k, v in meta),
        "</table>",
        "<h2>Contents</h2><table><tr><th>section</th><th>rows</th><th>files / note</th></tr>",
    ]
    for name, info in manifest["sections"].items():
        if info.get("included"):
            parts.append(
                f"<tr><td>{e(info['title'])}</td><td class='num'>{info['rows']}</td>"
                f"<td><code>{e(name)}.csv</code>, <code>.json</code></td></tr>"
            )
        else:
            parts.append(
                f"<tr class='omitted'><td>{e(info['title'])}</td><td class='num'>–</td><td>{e(info['note'])}</td></tr>"
            )
    parts.append("</table>")
    what = "PII flows" if graph.pii_only else "Data flows"
    parts.append(
        f"<h2>{what} as of {e(manifest['asOf'])}</h2>"
        f"<p class='note'>{len(graph.nodes)} datasets and {len(graph.edges)} flows "
        "(the busiest datasets, at most 40; the CSV files list every flow).</p>"
        f"<div class='figure'>{render_svg(graph)}</div>"
    )
    by_name = {r.section.name: r for r in results}
    for name in REPORT_SECTIONS:
        result = by_name.get(name)
        if result is None:
            continue
        parts.append(f"<h2>{e(result.section.title)}</h2>")
        if not result.rows:
            parts.append("<p class='note'>None.</p>")
            continue
        shown = len(result.sample)
        if shown < result.rows:
            parts.append(
                f"<p class='note'>First {shown} of {result.rows} rows; all are in <code>{e(name)}.csv</code>.</p>"
            )
        chosen = REPORT_COLUMNS.get(name)
        if chosen is not None:
            index = [result.columns.index(c) for c in chosen if c in result.columns]
            parts.append("<table><tr>" + "".join(f"<th>{e(result.columns[i])}</th>" for i in index) + "</tr>")
            for row in result.sample:
                parts.append("<tr>" + "".join(f"<td class='full'>{e(row[i])}</td>" for i in index) + "</tr>")
            parts.append("</table>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in result.columns) + "</tr>")
        for row in result.sample:
            parts.append("<tr>" + "".join(f"<td>{e(_short(v, 80))}</td>" for v in row) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
