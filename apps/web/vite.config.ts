/**
 * Builds the demo page into `dist/`, which the reference server serves at `/`.
 * `pnpm --filter @convoke/web dev` serves it with hot reload and forwards the
 * API to a reference server on 127.0.0.1:3000 (`npm start`).
 */
import { defineConfig } from "vite"

export default defineConfig({
  root: import.meta.dirname,
  base: "/",
  build: { outDir: "dist", emptyOutDir: true, target: "es2022" },
  server: {
    proxy: { "/api": "http://127.0.0.1:3000", "/health": "http://127.0.0.1:3000" }
  }
})
