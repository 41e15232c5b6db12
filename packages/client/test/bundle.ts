/**
 * The client's source entries bundled with Vite, in memory, as an app or a
 * browser gets them.
 */
import { fileURLToPath } from "node:url"
import { build, type Rolldown } from "vite"

/**
 * Bundles one source entry (`src/<entry>`) as one minified ES module, as an
 * app would ship it; the modules `external` picks stay imports.
 */
export const bundle = async (
  entry: string,
  external?: (id: string) => boolean
): Promise<Rolldown.OutputChunk> => {
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
      ...(external === undefined ? {} : { rolldownOptions: { external } })
    }
  })
  const results = Array.isArray(output) ? output : [output]
  const chunk = results
    .flatMap((result) => ("output" in result ? result.output : []))
    .find((item): item is Rolldown.OutputChunk => item.type === "chunk")
  if (chunk === undefined) throw new Error("Vite produced no bundle")
  return chunk
}
