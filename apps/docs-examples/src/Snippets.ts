/**
 * The runnable examples of a Markdown document: every fenced block whose info
 * string is a language this runner knows followed by `runnable`.
 *
 * - ` ```ts runnable ` — a program that ends by itself; it must exit with 0.
 * - ` ```ts runnable=server ` — a server: started with `PORT=0`, it prints
 *   the base URL of the API it serves (`http://…`) once it listens, serves
 *   until `SIGTERM`, then exits with 0.
 * - ` ```ts runnable=lambda ` — a module exporting a streaming Lambda
 *   `handler`, served through `LambdaHarness` the way a Function URL would.
 * - ` ```sh runnable ` — a shell script run with `bash -euo pipefail`; right
 *   after a server (or Lambda handler) it runs while that one serves, with
 *   its base URL in `$URL`.
 *
 * Any other fenced block is prose and left alone.
 *
 * @since 0.3.0
 */

/** What a runnable block is. */
export type Kind = "program" | "server" | "lambda" | "shell"

/** One runnable block of a document. */
export interface Snippet {
  readonly kind: Kind
  readonly code: string
  /** The 1-based line of the opening fence, for messages. */
  readonly line: number
}

const FENCE = /^(\s*)(`{3,}|~{3,})(.*)$/

const kindOf = (info: string): Kind | undefined => {
  const [language, marker, ...rest] = info.trim().split(/\s+/)
  if (rest.length > 0 || marker === undefined) return undefined
  if (language === "sh" || language === "bash" || language === "shell")
    return marker === "runnable" ? "shell" : undefined
  if (language !== "ts" && language !== "typescript") return undefined
  switch (marker) {
    case "runnable":
      return "program"
    case "runnable=server":
      return "server"
    case "runnable=lambda":
      return "lambda"
    default:
      return undefined
  }
}

/** The runnable blocks of a Markdown text, in order. */
export const extract = (markdown: string): ReadonlyArray<Snippet> => {
  const snippets: Array<Snippet> = []
  const lines = markdown.split("\n")
  let open:
    | { readonly fence: string; readonly indent: number; readonly kind: Kind | undefined; line: number }
    | undefined
  let body: Array<string> = []
  lines.forEach((text, index) => {
    const match = FENCE.exec(text)
    if (open === undefined) {
      if (match === null) return
      const [, indent = "", fence = "", info = ""] = match
      open = { fence, indent: indent.length, kind: kindOf(info), line: index + 1 }
      body = []
      return
    }
    // A closing fence: the same character, at least as long, and nothing after it.
    if (match !== null && match[2]!.startsWith(open.fence) && match[3]!.trim() === "") {
      if (open.kind !== undefined) {
        const indent = open.indent
        snippets.push({
          kind: open.kind,
          code: `${body.map((line) => line.slice(Math.min(indent, line.length - line.trimStart().length))).join("\n")}\n`,
          line: open.line
        })
      }
      open = undefined
      return
    }
    body.push(text)
  })
  return snippets
}
