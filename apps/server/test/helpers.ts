/**
 * Test helpers: start the reference server in-process, read SSE streams over
 * real sockets, and query the database the server writes to.
 */
import type { ChildProcessByStdio } from "node:child_process"
import { randomUUID } from "node:crypto"
import type { Readable } from "node:stream"
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import { type RunningServer, type StartOptions, start } from "../src/Server.ts"
import { load, type Settings } from "../src/Settings.ts"

/** The admin token of the tests that read the details of `/health`. */
export const ADMIN_TOKEN = "test-admin-token-0123456789abcdef"

/** The details of `/health`, read with the admin token. */
export const healthDetails = async (server: { readonly url: string }): Promise<any> =>
  (await fetch(`${server.url}/health`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()

/** Settings for a test server on a free loopback port. */
export const testSettings = (overrides: Partial<Settings> = {}): Settings => ({
  // Rate limits are off unless a test turns them on: suites send many requests from one address.
  // A generous creation budget keeps a slow machine from turning ids temporary.
  ...load([], {
    PORT: "0",
    CONVOKE_ECHO_DELAY_MS: "5",
    CONVOKE_CREATION_BUDGET_MS: "10000",
    // Request logs are tested on their own; elsewhere they only bury failures.
    CONVOKE_LOG_FORMAT: "off",
    CONVOKE_RATE_LIMIT_REQUESTS: "0",
    CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS: "0",
    CONVOKE_RATE_LIMIT_AUTH_FAILURES: "0",
    CONVOKE_RATE_LIMIT_CONCURRENT: "0"
  }),
  // Servers of parallel test files must not share an outbox: in memory unless a test gives a data
  // directory, and under a key prefix of their own when a test gives Redis.
  dataDir: "memory://",
  outboxPrefix: `convoke:test:outbox:${randomUUID()}:`,
  ...overrides
})

export const startServer = (
  overrides: Partial<Settings> = {},
  options: StartOptions = {}
): Promise<RunningServer> => start(testSettings(overrides), options)

export const chat = (
  server: { readonly url: string },
  body: unknown,
  init: { readonly headers?: Record<string, string>; readonly signal?: AbortSignal } = {}
) =>
  fetch(`${server.url}/api/v0.3/chat`, {
    method: "POST",
    headers: { "content-type": "application/json", ...init.headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...(init.signal === undefined ? {} : { signal: init.signal })
  })

/** Splits an SSE body into its `data:` payloads (and comments, as `:...`), without their `id:` lines. */
export const frames = (text: string): Array<string> =>
  text
    .split("\n\n")
    .filter((frame) => frame !== "")
    .map((frame) => frame.replace(/^id: [^\n]*\n/, ""))
    .map((frame) => (frame.startsWith("data: ") ? frame.slice(6) : frame))

/** Reads a whole stream and returns its data payloads. */
export const readAll = async (response: Response): Promise<Array<string>> => frames(await response.text())

/** The parsed JSON events of a stream (everything but `[DONE]` and comments). */
export const events = (payloads: ReadonlyArray<string>): Array<Record<string, any>> =>
  payloads
    .filter((payload) => payload !== "[DONE]" && !payload.startsWith(":"))
    .map((payload) => JSON.parse(payload))

/** What a child process prints, as it arrives, and when it ends. */
export interface Output {
  readonly stdout: () => string
  readonly stderr: () => string
  /**
   * Resolves with the first match of `pattern` in `stream` as soon as the
   * chunk carrying it arrives; rejects if the process closes without it.
   */
  readonly waitFor: (stream: "stdout" | "stderr", pattern: RegExp) => Promise<RegExpExecArray>
  /** The exit code, once the process has exited and everything it printed has been read. */
  readonly closed: Promise<number | null>
}

/** Collects a child process's output from its start, so a test awaits a line instead of polling for it. */
export const watchOutput = (child: ChildProcessByStdio<null, Readable, Readable>): Output => {
  const text = { stdout: "", stderr: "" }
  let isClosed = false
  for (const stream of ["stdout", "stderr"] as const) {
    child[stream].setEncoding("utf8")
    child[stream].on("data", (chunk: string) => {
      text[stream] += chunk
    })
  }
  // "close", not "exit": only then has all of stdout and stderr been read.
  const closed = new Promise<number | null>((resolve) =>
    child.once("close", (code) => {
      isClosed = true
      resolve(code)
    })
  )
  const waitFor = (stream: "stdout" | "stderr", pattern: RegExp) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const check = () => {
        const match = pattern.exec(text[stream])
        if (match !== null) {
          stop()
          resolve(match)
        } else if (isClosed) {
          stop()
          reject(
            new Error(`closed without printing ${pattern} on ${stream}:\n${text.stdout}\n${text.stderr}`)
          )
        }
      }
      const stop = () => {
        child[stream].off("data", check)
        child.off("close", check)
      }
      // Registered after the collecting listeners, so each check sees the chunk that woke it.
      child[stream].on("data", check)
      child.once("close", check)
      check()
    })
  return { stdout: () => text.stdout, stderr: () => text.stderr, waitFor, closed }
}

/** Runs a query against a PostgreSQL database (the one the server under test uses). */
export const query = <A extends object>(url: string, text: string, params: ReadonlyArray<unknown> = []) =>
  Effect.runPromise(
    Effect.gen(function* () {
      const sql = yield* PgClient.PgClient
      return (yield* sql.unsafe<A>(text, params as Array<any>)) as ReadonlyArray<A>
    }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })))
  )

/**
 * Whether a Redis server answers at `url` within two seconds. Any reply to
 * `PING` counts, an authentication error too: the server is there. Pass the
 * answer to `requireService` from `@convoke/core/testing`.
 */
export { isRedisReachable } from "@convoke/core/testing"

export const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
