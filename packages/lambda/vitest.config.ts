import { fileURLToPath } from "node:url"
import { defineProject } from "vitest/config"

export default defineProject({
  // The SAM example is its own package, naming the published `@convoke/lambda`: here, this package's source.
  resolve: {
    alias: [
      { find: /^@convoke\/lambda$/, replacement: fileURLToPath(new URL("./src/index.ts", import.meta.url)) }
    ]
  },
  test: {
    name: "@convoke/lambda",
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000
  }
})
