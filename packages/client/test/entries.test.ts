/**
 * The package's entries as a bundler sees them: `@convoke/client` pulls in
 * neither the AI SDK nor the `ai-sdk` module, and `@convoke/client/ai-sdk`
 * uses only the AI SDK's types, so it imports nothing from `ai` at run time.
 */
import { describe, expect, it } from "vitest"
import { bundle } from "./bundle.ts"

/** `ai` stays external: only its types may be used. */
const ai = (id: string) => id === "ai" || id.startsWith("ai/") || id.startsWith("@ai-sdk/")

describe("package entries", () => {
  it("@convoke/client does not import ai, nor the ai-sdk module", async () => {
    const main = await bundle("index.ts", ai)
    expect(main.imports).toEqual([])
    expect(main.dynamicImports).toEqual([])
    expect(main.moduleIds.filter((id) => /ai-sdk|[\\/]node_modules[\\/](ai|@ai-sdk)[\\/]/.test(id))).toEqual(
      []
    )
    expect(main.code).not.toContain("resumeStreamIsReplay")
    expect(main.code).not.toContain("text-delta")
  })

  it("@convoke/client/ai-sdk uses only the types of ai", async () => {
    const transport = await bundle("ai-sdk.ts", ai)
    expect(transport.imports).toEqual([])
    expect(transport.moduleIds.some((id) => id.endsWith("ai-sdk.ts"))).toBe(true)
    expect(transport.moduleIds.filter((id) => /[\\/]node_modules[\\/](ai|@ai-sdk)[\\/]/.test(id))).toEqual([])
    expect(transport.code).toContain("resumeStreamIsReplay")
  })
})
