import { defineConfig } from "vitest/config"

// One run covers every package and app. Set CONVOKE_TEST_REPORT to a path to
// also write vitest's JSON report there (CI reads its totals).
const report = process.env.CONVOKE_TEST_REPORT

export default defineConfig({
  test: {
    projects: ["packages/*/vitest.config.ts", "apps/*/vitest.config.ts"],
    reporters: report ? ["default", "json"] : ["default"],
    ...(report ? { outputFile: { json: report } } : {})
  }
})
