#!/usr/bin/env python3
"""Web UI: time to first render of the lineage explorer on a ~1,800-node graph, in headless Chromium.

    .venv/bin/python bench/ui_lineage.py [--nodes 1800] [--runs 3]

The graph is synthetic, shaped like bench/lineage.py's (every job reads 2 datasets and writes 4, datasets
with a few columns, one of them PII), grown breadth-first from a root until it has `--nodes` nodes — the
size of the largest 5-hop neighbourhood of that bench's 100k-dataset graph, without loading it (which
takes a long time). The page is the committed build (catalog/web/static/ui) and the API answers are
served by a local HTTP server from memory, so the number is the UI's own: parse, layout, React Flow's
first render and paint; not the server's (bench/lineage.py measures that).

"First render": from navigation start to the first animation frame after the laid-out nodes are in the
DOM. Then "fit all": from a click on the fit-view control to the frame with every node drawn (what
zooming out to the whole graph costs). Prints each run and the medians, and writes
bench/results/ui-lineage-latest.json.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
UI = ROOT / "catalog" / "web" / "static" / "ui"
RESULTS = ROOT / "bench" / "results" / "ui-lineage-latest.json"
CHROMIUM = "/usr/bin/chromium"


def synthetic_graph(size: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []

    def dataset(i: int) -> dict[str, Any]:
        fields: list[dict[str, Any]] = [
            {"path": f"col_{k}", "masked": False, "classifications": None, "children": []} for k in range(6)
        ]
        fields[1]["classifications"] = [{"tag": "PII.EMAIL", "status": "PII"}] if i % 3 == 0 else []
        return {
            "id": f"dataset:bench:ds_{i}",
            "kind": "DATASET",
            "namespace": "bench",
            "name": f"ds_{i}",
            "dataset": {"product": f"p{i % 6}", "tier": "analytics", "hasPii": i % 3 == 0, "fields": fields},
            "job": None,
        }

    def job(i: int) -> dict[str, Any]:
        return {
            "id": f"job:bench:job_{i}",
            "kind": "JOB",
            "namespace": "bench",
            "name": f"job_{i}",
            "dataset": None,
            "job": {"product": f"p{i % 6}"},
        }

    datasets, jobs = 1, 0
    nodes.append(dataset(0))
    frontier = [0]
    while frontier and len(nodes) < size:
        nxt = []
        for d in frontier:
            for _ in range(2):  # consumers of d, each writing 4 new datasets and reading one more
                if len(nodes) >= size:
                    break
                j = jobs
                jobs += 1
                nodes.append(job(j))
                edges.append({"origin": f"dataset:bench:ds_{d}", "destination": f"job:bench:job_{j}"})
                other = rng.randrange(datasets)
                if other != d:
                    edges.append({"origin": f"dataset:bench:ds_{other}", "destination": f"job:bench:job_{j}"})
                for _ in range(4):
                    if len(nodes) >= size:
                        break
                    nodes.append(dataset(datasets))
                    edges.append(
                        {"origin": f"job:bench:job_{j}", "destination": f"dataset:bench:ds_{datasets}"}
                    )
                    nxt.append(datasets)
                    datasets += 1
        frontier = nxt
    return {"data": {"lineage": {"root": "dataset:bench:ds_0", "nodes": nodes, "edges": edges}}}


# The key the UI reads, and the instant of the first frame painted with lineage nodes in it: a
# MutationObserver sees the first node element arrive, the next animation frame is its paint.
INIT = """
sessionStorage.setItem('catalog.apiKey', 'bench');
new MutationObserver((_, observer) => {
  if (document.querySelector('.react-flow__node')) {
    observer.disconnect();
    requestAnimationFrame(() => { window.__firstRender = performance.now(); });
  }
}).observe(document, {childList: true, subtree: true});
"""


def measure(size: int, runs: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    graph = json.dumps(synthetic_graph(size)).encode()
    n_nodes = size
    timings: list[float] = []
    fit_timings: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def _send(self, kind: str, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # /graphql: the lineage query
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._send("application/json", graph)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path.startswith("/api/v1/column-lineage"):
                self._send("application/json", b'{"graph": []}')
            elif path.startswith("/ui/assets/"):
                file = UI / path[len("/ui/") :]
                self._send("text/css" if file.suffix == ".css" else "text/javascript", file.read_bytes())
            else:
                self._send("text/html", (UI / "index.html").read_bytes())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"

    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            for _ in range(runs):
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                context.add_init_script(INIT)
                page = context.new_page()
                page.goto(f"{origin}/ui/lineage?node=dataset:bench:ds_0&depth=5")
                page.wait_for_function("() => window.__firstRender", timeout=60_000)
                ms = page.evaluate("() => window.__firstRender")
                shown = page.evaluate("() => document.querySelectorAll('.react-flow__node').length")
                timings.append(ms)
                # then the whole graph at once: the fit-view control draws every node
                fit_ms = page.evaluate(
                    """() => new Promise(resolve => {
                        const t0 = performance.now();
                        document.querySelector('.react-flow__controls-fitview').click();
                        const poll = () => document.querySelectorAll('.react-flow__node').length > 1000
                            ? requestAnimationFrame(() => resolve(performance.now() - t0))
                            : setTimeout(poll, 5);
                        poll();
                    })"""
                )
                fit_timings.append(fit_ms)
                print(
                    f"  first render {ms:7.0f} ms  ({shown} nodes in the DOM of {n_nodes}); "
                    f"fit all {fit_ms:6.0f} ms"
                )
                if len(timings) == 1:
                    page.wait_for_timeout(500)
                    page.screenshot(path=str(ROOT / "tests" / "artifacts" / "ui-bench-lineage-fit.png"))
                context.close()
        finally:
            browser.close()
            server.shutdown()
    return {
        "nodes": n_nodes,
        "runs_ms": [round(t) for t in timings],
        "median_ms": round(statistics.median(timings)),
        "fit_all_runs_ms": [round(t) for t in fit_timings],
        "fit_all_median_ms": round(statistics.median(fit_timings)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=1800)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    (ROOT / "tests" / "artifacts").mkdir(exist_ok=True)
    started = time.time()
    result = measure(args.nodes, args.runs)
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    print(
        f"lineage explorer, {result['nodes']} nodes: median first render {result['median_ms']} ms, "
        f"fit all {result['fit_all_median_ms']} ms"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
