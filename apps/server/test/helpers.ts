/**
 * Test helpers: start the reference server in-process and read SSE streams
 * over real sockets.
 */
import { type RunningServer, type StartOptions, start } from "../src/Server.ts"
import { load, type Settings } from "../src/Settings.ts"

/** Settings for a test server on a free loopback port. */
export const testSettings = (overrides: Partial<Settings> = {}): Settings => ({
  ...load([], { PORT: "0", CONVOKE_ECHO_DELAY_MS: "5" }),
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

/** Splits an SSE body into its `data:` payloads (and comments, as `:...`). */
export const frames = (text: string): Array<string> =>
  text
    .split("\n\n")
    .filter((frame) => frame !== "")
    .map((frame) => (frame.startsWith("data: ") ? frame.slice(6) : frame))
