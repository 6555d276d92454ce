// Copy Swagger UI's and Redoc's browser bundles next to the UI build, for /docs and /redoc offline.
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outRoot = process.env.CATALOG_UI_OUT ?? resolve(here, "../../catalog/web/static");
const out = resolve(outRoot, "vendor");
const modules = resolve(here, "../node_modules");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const [pkg, file] of [
  ["swagger-ui-dist", "swagger-ui-bundle.js"],
  ["swagger-ui-dist", "swagger-ui.css"],
  ["swagger-ui-dist", "favicon-32x32.png"],
  ["redoc", "bundles/redoc.standalone.js"],
]) {
  copyFileSync(resolve(modules, pkg, file), resolve(out, file.split("/").pop()));
}

// Redoc's sidebar shows its logo from its CDN, unconditionally: point it at a local file instead, so
// /redoc fetches nothing from outside the service.
const redoc = resolve(out, "redoc.standalone.js");
const CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg";
const bundled = readFileSync(redoc, "utf8");
if (!bundled.includes(CDN_LOGO)) throw new Error("redoc's CDN logo URL moved: update scripts/vendor.mjs");
writeFileSync(redoc, bundled.replaceAll(CDN_LOGO, "/static/vendor/redoc-logo-mini.svg"));
writeFileSync(
  resolve(out, "redoc-logo-mini.svg"),
  '<svg xmlns="http://www.w3.org/2000/svg" width="100" height="16" viewBox="0 0 100 16"><text x="0" y="12" font-family="sans-serif" font-size="11" fill="#666">Redoc</text></svg>\n',
);
