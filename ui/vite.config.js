import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";
import tailwindcss from "@tailwindcss/vite";

// The bundle is committed under axon/static and compared file by file in CI
// (tests/test_dashboard_build.py): Rollup's content hashes are stable for the same sources,
// and they keep a browser from running a cached bundle of an older Axon.
// Nodes serve the directory at /static/ and index.html at /.
export default defineConfig({
  base: "/static/",
  plugins: [svelte(), tailwindcss()],
  build: {
    outDir: "../axon/static",
    emptyOutDir: true,
    target: "es2020",
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
    rollupOptions: {
      output: {
        entryFileNames: "assets/app-[hash].js",
        chunkFileNames: "assets/[name]-[hash].js",
        assetFileNames: "assets/[name]-[hash][extname]",
      },
    },
  },
  server: {
    // `npm run dev`: the API comes from a running launcher (AXON_DEV_API, default 127.0.0.1:8080)
    proxy: Object.fromEntries(
      ["/api", "/cluster", "/kv", "/watch", "/auth"].map((p) => [p, `http://${process.env.AXON_DEV_API || "127.0.0.1:8080"}`]),
    ),
  },
});
