/**
 * The documents' runnable examples run as a reader would run them: every
 * block of README.md and docs/*.md marked `runnable` (`src/Snippets.ts`) is
 * written to a file of its own in a fresh directory and run with the
 * workspace's Node 24, which runs TypeScript as it is. A program must exit
 * with 0. A server (or Lambda handler) must print its URL, answer a
 * streamed chat with the metadata event alone in the first chunk and
 * `[DONE]` last, run the shell examples that follow it, and exit with 0 on
 * `SIGTERM`. Before they run, the TypeScript examples are type-checked
 * together with the workspace's strict settings, since Node runs TypeScript
 * without checking it.
 *
 * The examples get what the documents tell a reader to set: `CHAT_KEY`, a
 * key as strong as a generated one, `DATABASE_URL`, a fresh database on the
 * test PostgreSQL server, and `REDIS_URL` with a `REDIS_PREFIX` of this run's
 * own (its keys are deleted afterwards); no model key, so they use the echo
 * model.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { deleteKeys, isRedisReachable, REDIS_URL, requireService } from "@convoke/core/testing"
import { isServerReachable, makeTestDatabase, type TestDatabase } from "@convoke/store-pg/testing"
import { NodeRedis } from "@effect/platform-node"
import { Effect } from "effect"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import * as Snippets from "../src/Snippets.ts"

const here = fileURLToPath(new URL("..", import.meta.url))
const root = join(here, "../..")
// The workspace's Node (24) runs the tests: `node_modules/.bin/node` is a shell
// script in front of it, which would take the signals meant for the examples.
const node = process.execPath

const documents = [
  "README.md",
  ...readdirSync(join(root, "docs"))
    .filter((name) => name.endsWith(".md"))
    .sort()
    .map((name) => `docs/${name}`)
]
  .map((path) => ({ path, snippets: Snippets.extract(readFileSync(join(root, path), "utf8")) }))
  .filter((document) => document.snippets.length > 0)

/** A runnable block and the shell blocks that run against it while it serves. */
interface Step {
  readonly snippet: Snippets.Snippet
  readonly shells: ReadonlyArray<Snippets.Snippet>
}

const stepsOf = (snippets: ReadonlyArray<Snippets.Snippet>): ReadonlyArray<Step> => {
  const steps: Array<{ snippet: Snippets.Snippet; shells: Array<Snippets.Snippet> }> = []
  for (const snippet of snippets) {
    const last = steps.at(-1)
    if (
      snippet.kind === "shell" &&
      last !== undefined &&
      last.snippet.kind !== "program" &&
      last.snippet.kind !== "shell"
    )
      last.shells.push(snippet)
    else steps.push({ snippet, shells: [] })
  }
  return steps
}

const postgresReachable = requireService(it, "PostgreSQL for the examples", await isServerReachable())
const redisReachable = requireService(
  it,
  `Redis at ${new URL(REDIS_URL).host} for the examples`,
  await isRedisReachable(REDIS_URL)
)
// The shell examples call curl, as a reader would (CI installs it).
const curlFound = requireService(
  it,
  "curl for the shell examples",
  spawnSync("curl", ["--version"], { stdio: "ignore" }).status === 0
)
const reachable = postgresReachable && redisReachable && curlFound
const redisPrefix = `convoke:test:docs:${randomBytes(8).toString("hex")}:`

const key = `cvk_${randomBytes(32).toString("base64url")}`
let directory: string
let database: TestDatabase
const environment = (): NodeJS.ProcessEnv => {
  const { ANTHROPIC_API_KEY: _anthropic, ...inherited } = process.env
  return {
    ...inherited,
    CHAT_KEY: key,
    DATABASE_URL: database.url,
    REDIS_URL,
    REDIS_PREFIX: redisPrefix,
    PORT: "0"
  }
}

beforeAll(async () => {
  if (!reachable) return
  directory = mkdtempSync(join(tmpdir(), "convoke-docs-"))
  // The examples import the packages as a reader's project would; these are the workspace's.
  symlinkSync(join(here, "node_modules"), join(directory, "node_modules"), "dir")
  writeFileSync(join(directory, "package.json"), JSON.stringify({ type: "module" }))
  database = await makeTestDatabase()
})
afterAll(async () => {
  await database?.drop()
  if (reachable)
    await Effect.runPromise(deleteKeys(redisPrefix).pipe(Effect.provide(NodeRedis.layer({ url: REDIS_URL }))))
  if (directory !== undefined) rmSync(directory, { recursive: true, force: true })
})

const running = new Set<ChildProcess>()
afterEach(() => {
  for (const child of running) child.kill("SIGKILL")
  running.clear()
})

/** What a finished process said. */
interface Ended {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly output: string
}

/** Starts a process; `url` resolves with the first URL it prints, `ended` when it exits. */
const start = (command: string, args: ReadonlyArray<string>, cwd: string, env: NodeJS.ProcessEnv) => {
  const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] })
  running.add(child)
  let output = ""
  let announced: ((url: string) => void) | undefined
  const url = new Promise<string>((resolve) => {
    announced = resolve
  })
  const collect = (chunk: Buffer) => {
    output += chunk.toString("utf8")
    const found = /Convoke at (https?:\/\/\S+)/.exec(output)
    if (found !== null) announced?.(found[1]!)
  }
  child.stdout.on("data", collect)
  child.stderr.on("data", collect)
  const ended = new Promise<Ended>((resolve) => {
    child.once("close", (code, signal) => {
      running.delete(child)
      resolve({ code, signal, output })
    })
  })
  return { child, url, ended }
}

/** A URL, or the process's output when it exits before printing one. */
const urlOrExit = (started: ReturnType<typeof start>): Promise<string> =>
  Promise.race([
    started.url,
    started.ended.then(({ code, output }) => {
      throw new Error(`exited with ${code} before printing its URL:\n${output}`)
    })
  ])

const expectEnded = (ended: Ended) => {
  expect({ code: ended.code, signal: ended.signal }, ended.output).toEqual({ code: 0, signal: null })
}

/** A streamed chat: the metadata event alone in the first chunk, `[DONE]` last. */
const expectStreamedChat = async (url: string) => {
  const response = await fetch(`${url}/api/v0.3/chat`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ message: "Hello from the docs", stream: true })
  })
  expect(response.status).toBe(200)
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  const first = await reader.read()
  const head = decoder.decode(first.value, { stream: true })
  expect(head).toMatch(/^data: \{"type":"metadata","conversation_id":"[0-9a-f-]{36}"[^\n]*\}\n\n$/)
  let rest = ""
  for (let read = await reader.read(); !read.done; read = await reader.read())
    rest += decoder.decode(read.value, { stream: true })
  expect(rest).toContain('"type":"content"')
  expect(rest.trimEnd()).toMatch(/data: \[DONE\]$/)
}

const runShell = async (snippet: Snippets.Snippet, cwd: string, env: NodeJS.ProcessEnv) => {
  const ended = await start("bash", ["-euo", "pipefail", "-c", snippet.code], cwd, env).ended
  expectEnded(ended)
  return ended.output
}

describe.skipIf(!reachable)("the TypeScript examples", () => {
  it("type-check under the workspace's strict settings", async () => {
    const checked = join(directory, "typecheck")
    mkdirSync(checked, { recursive: true })
    for (const document of documents)
      for (const snippet of document.snippets)
        if (snippet.kind !== "shell")
          writeFileSync(
            join(checked, `${document.path.replace(/[/.]/g, "-")}-${snippet.line}.ts`),
            snippet.code
          )
    writeFileSync(
      join(directory, "tsconfig.json"),
      JSON.stringify({
        extends: join(root, "tsconfig.base.json"),
        // An application, not a library: no declarations to emit.
        compilerOptions: { noEmit: true, declaration: false },
        include: ["typecheck"]
      })
    )
    const tsc = join(root, "node_modules/typescript/bin/tsc")
    const ended = await start(node, [tsc, "-p", directory, "--pretty", "false"], directory, process.env).ended
    expectEnded(ended)
  })
})

for (const document of documents) {
  describe.skipIf(!reachable)(document.path, () => {
    for (const { snippet, shells } of stepsOf(document.snippets)) {
      it(`line ${snippet.line}: ${snippet.kind}`, async () => {
        // A directory of its own, as a project would have (an embedded database, a journal).
        const cwd = join(directory, document.path.replace(/[/.]/g, "-"), `line-${snippet.line}`)
        mkdirSync(cwd, { recursive: true })
        const file = join(cwd, snippet.kind === "lambda" ? "handler.ts" : "main.ts")
        writeFileSync(file, snippet.code)
        const env = environment()
        switch (snippet.kind) {
          case "shell":
            await runShell(snippet, cwd, env)
            return
          case "program":
            expectEnded(await start(node, [file], cwd, env).ended)
            return
          case "server":
          case "lambda": {
            const started =
              snippet.kind === "server"
                ? start(node, [file], cwd, env)
                : start(node, [join(here, "src/serveLambda.ts"), file], cwd, env)
            const url = await urlOrExit(started)
            await expectStreamedChat(url)
            for (const shell of shells) await runShell(shell, cwd, { ...env, URL: url })
            started.child.kill("SIGTERM")
            expectEnded(await started.ended)
          }
        }
      })
    }
  })
}

describe("Snippets.extract", () => {
  it("finds the runnable blocks and leaves the others", () => {
    const markdown = [
      "```ts",
      "prose()",
      "```",
      "```ts runnable",
      "console.log(1)",
      "```",
      "  ```ts runnable=server",
      "  serve()",
      "  ```",
      "````sh runnable",
      "```",
      "curl $URL",
      "````",
      "```ts runnable=lambda",
      "export const handler = h",
      "```"
    ].join("\n")
    expect(Snippets.extract(markdown)).toEqual([
      { kind: "program", code: "console.log(1)\n", line: 4 },
      { kind: "server", code: "serve()\n", line: 7 },
      { kind: "shell", code: "```\ncurl $URL\n", line: 10 },
      { kind: "lambda", code: "export const handler = h\n", line: 14 }
    ])
  })

  it("has examples to run", () => {
    expect(documents.map((document) => document.path)).toContain("docs/embedding.md")
  })
})
