/**
 * Builds the demo pages into `dist/`, which the reference server serves at `/`:
 * `index.html` (the client alone) and `use-chat.html` (React and the AI SDK's
 * `useChat` over `@convoke/client/ai-sdk`).
 * `pnpm --filter @convoke/web dev` serves it with hot reload and forwards the
 * API to a reference server on 127.0.0.1:3000 (`npm start`).
 */
import { defineConfig } from "vite"

export default defineConfig({
  root: import.meta.dirname,
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    rolldownOptions: {
      // swr (under @ai-sdk/react) marks its modules "use client", which means nothing in a page bundle.
      onLog: (level, log, handler) => {
        if (log.code !== "MODULE_LEVEL_DIRECTIVE") handler(level, log)
      },
      input: {
        main: `${import.meta.dirname}/index.html`,
        useChat: `${import.meta.dirname}/use-chat.html`
      }
    }
  },
  server: {
    proxy: { "/api": "http://127.0.0.1:3000", "/health": "http://127.0.0.1:3000" }
  }
})
