// Copy Swagger UI's and Redoc's browser bundles next to the UI build, for /docs and /redoc offline.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
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
