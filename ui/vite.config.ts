// Deterministic output (fixed asset names, no hashes): the build is committed under the Python package and
// CI rebuilds it from the lockfile to check it is current (tests/ui/test_build_drift.py).
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

const outRoot = process.env.CATALOG_UI_OUT ?? resolve(here, "../catalog/web/static");

export default defineConfig({
  base: "/ui/",
  plugins: [react()],
  // `npx vite` for live reload against a service running on :5000
  server: { proxy: { "/graphql": "http://127.0.0.1:5000", "/api": "http://127.0.0.1:5000" } },
  build: {
    outDir: resolve(outRoot, "ui"),
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 2000,
    rollupOptions: {
      output: {
        entryFileNames: "assets/[name].js",
        chunkFileNames: "assets/[name].js",
        assetFileNames: "assets/[name][extname]",
      },
    },
  },
  worker: { format: "es", rollupOptions: { output: { entryFileNames: "assets/[name].js" } } },
});
