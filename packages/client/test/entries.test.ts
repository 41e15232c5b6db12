/**
 * The package's entries as a bundler sees them: `@convoke/client` pulls in
 * neither the AI SDK nor the `ai-sdk` module, and `@convoke/client/ai-sdk`
 * uses only the AI SDK's types, so it imports nothing from `ai` at run time.
 */
import { fileURLToPath } from "node:url"
import { build, type Rolldown } from "vite"
import { describe, expect, it } from "vitest"

/** Bundles one source entry as an ES module (minified, as an app would ship it); `ai` stays external. */
const bundle = async (entry: string): Promise<Rolldown.OutputChunk> => {
  const output = await build({
    configFile: false,
    logLevel: "silent",
    build: {
      write: false,
      minify: true,
      lib: {
        entry: fileURLToPath(new URL(`../src/${entry}`, import.meta.url)),
        formats: ["es"],
        fileName: "entry"
      },
      rolldownOptions: { external: (id) => id === "ai" || id.startsWith("ai/") || id.startsWith("@ai-sdk/") }
    }
  })
  const results = Array.isArray(output) ? output : [output]
  const chunk = results
    .flatMap((result) => ("output" in result ? result.output : []))
    .find((item): item is Rolldown.OutputChunk => item.type === "chunk")
  if (chunk === undefined) throw new Error("Vite produced no bundle")
  return chunk
}

describe("package entries", () => {
  it("@convoke/client does not import ai, nor the ai-sdk module", async () => {
    const main = await bundle("index.ts")
    expect(main.imports).toEqual([])
    expect(main.dynamicImports).toEqual([])
    expect(main.moduleIds.filter((id) => /ai-sdk|[\\/]node_modules[\\/](ai|@ai-sdk)[\\/]/.test(id))).toEqual(
      []
    )
    expect(main.code).not.toContain("resumeStreamIsReplay")
    expect(main.code).not.toContain("text-delta")
  })

  it("@convoke/client/ai-sdk uses only the types of ai", async () => {
    const transport = await bundle("ai-sdk.ts")
    expect(transport.imports).toEqual([])
    expect(transport.moduleIds.some((id) => id.endsWith("ai-sdk.ts"))).toBe(true)
    expect(transport.moduleIds.filter((id) => /[\\/]node_modules[\\/](ai|@ai-sdk)[\\/]/.test(id))).toEqual([])
    expect(transport.code).toContain("resumeStreamIsReplay")
  })
})
