/**
 * The load generator: keep-alive HTTP clients that post chat requests, parse
 * the Server-Sent Events as they arrive (frames end at a blank line), and
 * time each request to its metadata event (TTFE) and to `data: [DONE]`.
 *
 * `run` is closed-loop: `concurrency` clients each send their next request as
 * soon as the previous one ends, until `requests` have been sent. `holdOpen`
 * opens `count` slow streams, waits until every one has its metadata event,
 * calls back (to sample memory), then closes them all.
 */
import { readFileSync } from "node:fs"
import { Agent, request as httpRequest } from "node:http"
import { performance } from "node:perf_hooks"

/** The path of the chat endpoint. */
export const CHAT_PATH = "/api/v0.3/chat"

/** One request's timings, in milliseconds from its start. */
export interface Sample {
  readonly ttfe: number
  readonly done: number
  readonly temporary: boolean
  /**
   * Which request of the run it was, in the order sent (`run` only). The first
   * `concurrency` are the first wave: sent at once, each on a new connection.
   */
  readonly index?: number | undefined
}

/** The result of `run`. */
export interface Result {
  readonly samples: ReadonlyArray<Sample>
  readonly errors: number
  /** The first few error messages, to say what went wrong. */
  readonly errorMessages: ReadonlyArray<string>
  readonly seconds: number
}

/** How one stream ends: its timings, or an error message. */
type Outcome = { readonly ok: true; readonly sample: Sample } | { readonly ok: false; readonly error: string }

/** The options of one streamed request. */
interface StreamOptions {
  readonly url: string
  readonly agent: Agent
  readonly body: string
  readonly headers?: Record<string, string> | undefined
  /** Called when the metadata event has arrived; the stream is then left open until `signal` aborts. */
  readonly onMetadata?: (() => void) | undefined
  readonly signal?: AbortSignal | undefined
  readonly timeoutMs: number
}

/** Sends one streaming chat request and reads it to the end (or until aborted after its metadata event). */
export const stream = (options: StreamOptions): Promise<Outcome> =>
  new Promise((resolve) => {
    const started = performance.now()
    let ttfe = -1
    let temporary = false
    let buffer = ""
    let settled = false
    const settle = (outcome: Outcome) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve(outcome)
    }
    const target = new URL(CHAT_PATH, options.url)
    const request = httpRequest(target, {
      method: "POST",
      agent: options.agent,
      headers: {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(options.body),
        ...options.headers
      }
    })
    const timer = setTimeout(() => {
      request.destroy()
      settle({ ok: false, error: `no [DONE] within ${options.timeoutMs} ms` })
    }, options.timeoutMs)
    options.signal?.addEventListener("abort", () => {
      request.destroy()
      if (ttfe >= 0) settle({ ok: true, sample: { ttfe, done: performance.now() - started, temporary } })
      else settle({ ok: false, error: "aborted before the metadata event" })
    })
    request.on("error", (error) => settle({ ok: false, error: error.message }))
    request.on("response", (response) => {
      if (response.statusCode !== 200) {
        let text = ""
        response.setEncoding("utf8")
        response.on("data", (chunk: string) => (text += chunk))
        response.on("end", () =>
          settle({ ok: false, error: `status ${response.statusCode}: ${text.slice(0, 200)}` })
        )
        return
      }
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => {
        buffer += chunk
        if (ttfe < 0) {
          const end = buffer.indexOf("\n\n")
          if (end < 0) return
          ttfe = performance.now() - started
          const frame = buffer.slice(0, end)
          if (!frame.startsWith('data: {"type":"metadata","conversation_id":"')) {
            request.destroy()
            return settle({
              ok: false,
              error: `first frame is not the metadata event: ${frame.slice(0, 120)}`
            })
          }
          temporary = frame.includes('"temporary":true')
          options.onMetadata?.()
        }
        if (buffer.endsWith("data: [DONE]\n\n")) {
          settle({ ok: true, sample: { ttfe, done: performance.now() - started, temporary } })
        } else if (buffer.length > 4096) {
          // Keep only the tail: long streams need not be held in memory.
          buffer = buffer.slice(-64)
        }
      })
      response.on("end", () => {
        if (!settled) settle({ ok: false, error: "the stream ended without [DONE]" })
      })
      response.on("error", (error) => settle({ ok: false, error: error.message }))
    })
    request.end(options.body)
  })

/** Options of `run`. */
export interface RunOptions {
  readonly url: string
  readonly concurrency: number
  /** Requests to send; with `seconds`, the most to send. */
  readonly requests?: number | undefined
  /** Send requests for this long, then let the last ones finish. */
  readonly seconds?: number | undefined
  readonly message: string
  readonly timeoutMs?: number | undefined
}

/**
 * Runs streams over `concurrency` keep-alive connections, closed-loop, until
 * `requests` have been sent or `seconds` have passed.
 */
export const run = async (options: RunOptions): Promise<Result> => {
  const agent = new Agent({ keepAlive: true, maxSockets: options.concurrency, keepAliveMsecs: 30_000 })
  const body = JSON.stringify({ message: options.message, stream: true })
  const samples: Array<Sample> = []
  const errorMessages: Array<string> = []
  let errors = 0
  let sent = 0
  const started = performance.now()
  const limit = options.requests ?? Number.POSITIVE_INFINITY
  const stopAt = options.seconds === undefined ? Number.POSITIVE_INFINITY : started + options.seconds * 1000
  const client = async () => {
    while (sent < limit && performance.now() < stopAt) {
      const index = sent++
      const outcome = await stream({ url: options.url, agent, body, timeoutMs: options.timeoutMs ?? 30_000 })
      if (outcome.ok) samples.push({ ...outcome.sample, index })
      else {
        errors++
        if (errorMessages.length < 5) errorMessages.push(outcome.error)
      }
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, client))
  const seconds = (performance.now() - started) / 1000
  agent.destroy()
  return { samples, errors, errorMessages, seconds }
}

/** Options of `holdOpen`. */
export interface HoldOptions {
  readonly url: string
  readonly count: number
  readonly message: string
  /** Streams opened at once while ramping up (default 500). */
  readonly batch?: number | undefined
  /** Longest wait for all metadata events (default 120 s). */
  readonly timeoutMs?: number | undefined
  /** Called with every stream open and past its metadata event; the streams close when it resolves. */
  readonly whileOpen: () => Promise<void>
}

/** The result of `holdOpen`. */
export interface HoldResult {
  readonly opened: number
  readonly errors: number
  readonly errorMessages: ReadonlyArray<string>
  readonly temporary: number
  /** TTFE of each stream while the others were opening. */
  readonly ttfe: ReadonlyArray<number>
}

/** Opens `count` slow streams at once, calls `whileOpen`, then closes them. */
export const holdOpen = async (options: HoldOptions): Promise<HoldResult> => {
  const agent = new Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY })
  const body = JSON.stringify({ message: options.message, stream: true })
  const controller = new AbortController()
  const timeoutMs = options.timeoutMs ?? 120_000
  let opened = 0
  let allOpen!: () => void
  const everyOneOpen = new Promise<void>((resolve) => (allOpen = resolve))
  const outcomes: Array<Promise<Outcome>> = []
  const batch = options.batch ?? 500
  let failedEarly = 0
  for (let index = 0; index < options.count; index += batch) {
    const wave: Array<Promise<Outcome>> = []
    for (let offset = index; offset < Math.min(options.count, index + batch); offset++) {
      const outcome = stream({
        url: options.url,
        agent,
        body,
        signal: controller.signal,
        timeoutMs,
        onMetadata: () => {
          if (++opened + failedEarly === options.count) allOpen()
        }
      })
      outcome.then((result) => {
        if (!result.ok && ++failedEarly + opened === options.count) allOpen()
      })
      wave.push(outcome)
    }
    outcomes.push(...wave)
    // Let the wave connect before the next, so the listen backlog never overflows.
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const waited = await Promise.race([
    everyOneOpen.then(() => true),
    new Promise<false>((resolve) => setTimeout(() => resolve(false), timeoutMs))
  ])
  if (waited) await options.whileOpen()
  controller.abort()
  const results = await Promise.all(outcomes)
  agent.destroy()
  const errorMessages: Array<string> = []
  let errors = 0
  let temporary = 0
  const ttfe: Array<number> = []
  for (const result of results) {
    if (result.ok) {
      ttfe.push(result.sample.ttfe)
      if (result.sample.temporary) temporary++
    } else {
      errors++
      if (errorMessages.length < 5) errorMessages.push(result.error)
    }
  }
  return { opened, errors, errorMessages, temporary, ttfe }
}

/**
 * Connections the kernel has dropped at a full listen queue, machine-wide
 * (`ListenDrops` of `/proc/net/netstat`; 0 where there is no such file).
 * The difference across a scenario is its SYN drops.
 */
export const listenDrops = (): number => {
  try {
    const lines = readFileSync("/proc/net/netstat", "utf8").split("\n")
    const names = lines.find((line) => line.startsWith("TcpExt:"))?.split(" ") ?? []
    const values = lines.filter((line) => line.startsWith("TcpExt:"))[1]?.split(" ") ?? []
    const at = names.indexOf("ListenDrops")
    return at < 0 ? 0 : Number(values[at] ?? 0)
  } catch {
    return 0
  }
}

/** The `p`-th percentile (0–100) of `values`, by nearest rank. */
export const percentile = (values: ReadonlyArray<number>, p: number): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}
