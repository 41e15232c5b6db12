/**
 * The soak's clients: `concurrency` workers that each run one turn after
 * another until a deadline, in a mix of new conversations, continued ones,
 * turns whose connection drops and that are read again through the resume
 * endpoint, and turns stopped while they run. Every answer is checked against
 * the wire contract: the metadata event first, `id:` lines counting up from 1
 * with no gap, the echo's exact text, `[DONE]` last — or, for a stopped turn,
 * the `cancelled` error event then `[DONE]`. Failures are counted by kind,
 * with a few messages each.
 *
 * Unlike `Load.stream`, which times a stream and keeps only its tail, these
 * clients keep every event, since what they check is the events themselves.
 */
import { Agent, request as httpRequest, type IncomingMessage } from "node:http"
import { performance } from "node:perf_hooks"
import { CHAT_PATH } from "./Load.ts"

/** The kinds of turn in the mix. */
export type Kind = "new" | "continued" | "resumed" | "stopped"

export const KINDS: ReadonlyArray<Kind> = ["new", "continued", "resumed", "stopped"]

/** The share of each kind in the mix (the rest are new conversations). */
export const MIX: Readonly<Record<Exclude<Kind, "new">, number>> = {
  continued: 0.25,
  resumed: 0.15,
  stopped: 0.1
}

/** A conversation is continued at most this many turns, so its history stays short. */
const MAX_TURNS = 6

/** One Server-Sent Event: its `id:` line, if any, and its data. */
interface Event {
  readonly id: string | undefined
  readonly data: string
}

/** The part of the metadata event the checks need. */
interface Metadata {
  readonly conversation_id: string
  readonly turn_id?: string | undefined
  readonly temporary?: boolean | undefined
  readonly resumed?: boolean | undefined
}

/** How a read of one stream went. */
interface StreamRead {
  readonly status: number
  /** Milliseconds from the request to its metadata event; -1 if none came. */
  readonly ttfe: number
  readonly events: ReadonlyArray<Event>
  /** `done`: read to `[DONE]`; `dropped`: closed by us; `ended`: the server ended it before `[DONE]`. */
  readonly end: "done" | "dropped" | "ended"
  /** The body of a non-200 answer. */
  readonly body: string
}

/** A failed check: which and why. */
export class CheckFailed extends Error {
  readonly check: string
  constructor(check: string, message: string) {
    super(message)
    this.check = check
  }
}

const fail = (check: string, message: string): never => {
  throw new CheckFailed(check, message)
}

/** Splits complete SSE frames off `buffer`; comments (`: ping`) are skipped. */
const takeFrames = (buffer: string): { readonly events: Array<Event>; readonly rest: string } => {
  const events: Array<Event> = []
  let rest = buffer
  for (let end = rest.indexOf("\n\n"); end >= 0; end = rest.indexOf("\n\n")) {
    const frame = rest.slice(0, end)
    rest = rest.slice(end + 2)
    let id: string | undefined
    const data: Array<string> = []
    for (const line of frame.split("\n")) {
      if (line.startsWith("id: ")) id = line.slice(4)
      else if (line.startsWith("data: ")) data.push(line.slice(6))
    }
    if (data.length > 0) events.push({ id, data: data.join("\n") })
  }
  return { events, rest }
}

/** Options of `readStream`. */
interface ReadOptions {
  readonly url: string
  readonly agent: Agent
  readonly method: "GET" | "POST"
  readonly path: string
  readonly body?: string | undefined
  readonly headers?: Record<string, string> | undefined
  readonly timeoutMs: number
  /** Called with each event as it arrives; `true` drops the connection right after it. */
  readonly onEvent?: ((event: Event, index: number) => boolean | undefined) | undefined
}

/** Sends one request and reads its event stream to `[DONE]`, to the server's end, or to a drop. */
const readStream = (options: ReadOptions): Promise<StreamRead> =>
  new Promise((resolve, reject) => {
    const started = performance.now()
    const events: Array<Event> = []
    let ttfe = -1
    let buffer = ""
    let settled = false
    const settle = (read: StreamRead | Error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (read instanceof Error) reject(read)
      else resolve(read)
    }
    const request = httpRequest(new URL(options.path, options.url), {
      method: options.method,
      agent: options.agent,
      headers: {
        ...(options.body === undefined
          ? {}
          : { "content-type": "application/json", "content-length": Buffer.byteLength(options.body) }),
        ...options.headers
      }
    })
    const timer = setTimeout(() => {
      request.destroy()
      settle(
        new CheckFailed("timeout", `${options.method} ${options.path}: no end within ${options.timeoutMs} ms`)
      )
    }, options.timeoutMs)
    request.on("error", (error) =>
      settle(new CheckFailed("network", `${options.method} ${options.path}: ${error.message}`))
    )
    request.on("response", (response: IncomingMessage) => {
      response.setEncoding("utf8")
      const status = response.statusCode ?? 0
      if (status !== 200) {
        let body = ""
        response.on("data", (chunk: string) => (body += chunk))
        response.on("end", () => settle({ status, ttfe, events, end: "ended", body: body.slice(0, 200) }))
        return
      }
      response.on("data", (chunk: string) => {
        if (settled) return
        const frames = takeFrames(buffer + chunk)
        buffer = frames.rest
        for (const event of frames.events) {
          if (ttfe < 0) ttfe = performance.now() - started
          events.push(event)
          if (event.data === "[DONE]") return settle({ status, ttfe, events, end: "done", body: "" })
          if (options.onEvent?.(event, events.length - 1) === true) {
            request.destroy()
            return settle({ status, ttfe, events, end: "dropped", body: "" })
          }
        }
      })
      response.on("end", () => settle({ status, ttfe, events, end: "ended", body: "" }))
      response.on("error", (error) =>
        settle(new CheckFailed("network", `${options.method} ${options.path}: ${error.message}`))
      )
    })
    request.end(options.body)
  })

/** Sends one request with a JSON answer; gives its status and body. */
const call = (url: string, agent: Agent, path: string): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const request = httpRequest(new URL(path, url), {
      method: "POST",
      agent,
      headers: { "content-length": 0 }
    })
    request.on("error", (error) => reject(new CheckFailed("network", `POST ${path}: ${error.message}`)))
    request.on("response", (response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => (body += chunk))
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }))
    })
    request.end()
  })

/** The metadata event that must open every stream; fails the check otherwise. */
const metadataOf = (read: StreamRead, what: string): Metadata => {
  if (read.status !== 200) fail("status", `${what}: status ${read.status}: ${read.body}`)
  const first = read.events[0]
  if (first === undefined) return fail("no metadata", `${what}: no event at all`)
  if (first.id !== undefined || !first.data.startsWith('{"type":"metadata","conversation_id":"'))
    fail("metadata not first", `${what}: first event ${first.data.slice(0, 120)}`)
  const metadata = JSON.parse(first.data) as Metadata
  if (metadata.temporary === true) fail("temporary id", `${what}: ${first.data.slice(0, 160)}`)
  return metadata
}

/**
 * Checks the events after the metadata event: `id:` lines `<turn_id>:<seq>`
 * counting up from `afterSeq + 1`; gives their content and whatever ended them.
 */
const followingEvents = (
  events: ReadonlyArray<Event>,
  turnId: string | undefined,
  afterSeq: number,
  what: string
) => {
  let text = ""
  let seq = afterSeq
  let error: string | undefined
  for (const event of events.slice(1)) {
    seq++
    if (turnId !== undefined && event.id !== `${turnId}:${seq}`)
      fail("event ids", `${what}: expected id ${turnId}:${seq}, got ${event.id}`)
    if (event.data === "[DONE]") break
    const parsed = JSON.parse(event.data) as {
      type: string
      delta?: { content: string }
      error?: { type: string; message: string }
    }
    if (parsed.type === "content") text += parsed.delta?.content ?? ""
    else if (parsed.type === "error") error = parsed.error?.type ?? "unknown"
    else fail("unexpected event", `${what}: ${event.data.slice(0, 120)}`)
  }
  return { text, seq, error }
}

/** The last `<seq>` read, from the last event with an `id:` line (0 if none). */
const lastSeq = (events: ReadonlyArray<Event>): { id: string | undefined; seq: number } => {
  const last = events.findLast((event) => event.id !== undefined)
  return last === undefined
    ? { id: undefined, seq: 0 }
    : { id: last.id, seq: Number(last.id!.split(":").at(-1)) }
}

/** What the echo model answers on turn `turn` of a conversation. */
const echoOf = (turn: number, message: string) => `Echo #${turn}: ${message}`

/** The outcome of one turn of the mix. */
interface Turn {
  /** TTFE of the `POST /chat`, in milliseconds. */
  readonly ttfe: number
  /** The conversation, to continue, if its turn completed. */
  readonly conversationId: string | undefined
  /** A stop that found the turn already over (`204`): counted apart, not an error. */
  readonly stopAfterEnd?: boolean | undefined
}

/** One worker's connection to the server and its conversation. */
interface Context {
  readonly url: string
  readonly agent: Agent
  readonly timeoutMs: number
}

const chatBody = (message: string, conversationId: string | undefined) =>
  JSON.stringify({
    message,
    stream: true,
    ...(conversationId === undefined ? {} : { conversation_id: conversationId })
  })

/** A new or continued conversation, read to `[DONE]`. */
const plainTurn = async (
  context: Context,
  message: string,
  conversationId: string | undefined,
  turn: number
): Promise<Turn> => {
  const read = await readStream({
    ...context,
    method: "POST",
    path: CHAT_PATH,
    body: chatBody(message, conversationId)
  })
  const metadata = metadataOf(read, "chat")
  if (conversationId !== undefined && metadata.conversation_id !== conversationId)
    fail("conversation id", `continued ${conversationId}, answered ${metadata.conversation_id}`)
  if (read.end !== "done")
    fail("no [DONE]", `chat: the stream ended after ${read.events.length} events without [DONE]`)
  const { text, error } = followingEvents(read.events, metadata.turn_id, 0, "chat")
  if (error !== undefined) fail("error event", `chat: error event ${error}`)
  if (text !== echoOf(turn, message)) fail("text", `chat: expected "${echoOf(turn, message)}", got "${text}"`)
  return { ttfe: read.ttfe, conversationId: metadata.conversation_id }
}

/**
 * A turn whose connection drops after the metadata event (`afterContent` 0)
 * or after a few content events, then is read again through the resume
 * endpoint with the last event id: exactly the rest, then `[DONE]`.
 */
const resumedTurn = async (
  context: Context,
  message: string,
  conversationId: string | undefined,
  turn: number,
  afterContent: number
): Promise<Turn> => {
  const read = await readStream({
    ...context,
    method: "POST",
    path: CHAT_PATH,
    body: chatBody(message, conversationId),
    onEvent: (_, index) => index >= afterContent
  })
  const metadata = metadataOf(read, "chat before the drop")
  if (read.end !== "dropped") fail("no drop", `the turn ended (${read.end}) before the client could drop it`)
  const before = followingEvents(read.events, metadata.turn_id, 0, "chat before the drop")
  const last = lastSeq(read.events)
  const resume = await readStream({
    ...context,
    method: "GET",
    path: `/api/v0.3/conversations/${metadata.conversation_id}/stream`,
    headers: last.id === undefined ? {} : { "last-event-id": last.id }
  })
  const again = metadataOf(resume, "resume")
  if (
    again.resumed !== true ||
    again.conversation_id !== metadata.conversation_id ||
    again.turn_id !== metadata.turn_id
  )
    fail("resume metadata", `resume: metadata ${JSON.stringify(again)} for ${JSON.stringify(metadata)}`)
  if (resume.end !== "done")
    fail("no [DONE]", `resume: ended after ${resume.events.length} events without [DONE]`)
  const after = followingEvents(resume.events, metadata.turn_id, last.seq, "resume")
  if (after.error !== undefined) fail("error event", `resume: error event ${after.error}`)
  const text = before.text + after.text
  if (text !== echoOf(turn, message))
    fail("text", `resume: expected "${echoOf(turn, message)}", got "${text}"`)
  return { ttfe: read.ttfe, conversationId: metadata.conversation_id }
}

/**
 * A turn stopped as soon as its metadata event arrives: `202` with its turn
 * id, and its stream ends with the `cancelled` error event then `[DONE]`. A
 * `204` (the turn was already over) must come with a complete stream.
 */
const stoppedTurn = async (
  context: Context,
  message: string,
  conversationId: string | undefined
): Promise<Turn> => {
  let stop: Promise<{ status: number; body: string }> | undefined
  const read = await readStream({
    ...context,
    method: "POST",
    path: CHAT_PATH,
    body: chatBody(message, conversationId),
    onEvent: (event, index) => {
      if (index === 0 && event.data.startsWith('{"type":"metadata"')) {
        const { conversation_id } = JSON.parse(event.data) as Metadata
        stop = call(context.url, context.agent, `/api/v0.3/conversations/${conversation_id}/stop`)
      }
      return false
    }
  })
  const metadata = metadataOf(read, "chat to stop")
  const stopped = await stop!
  if (read.end !== "done")
    fail("no [DONE]", `stopped chat: ended after ${read.events.length} events without [DONE]`)
  const { error } = followingEvents(read.events, metadata.turn_id, 0, "stopped chat")
  if (stopped.status === 204) {
    if (error !== undefined) fail("stop", `stop answered 204 but the stream carried error ${error}`)
    return { ttfe: read.ttfe, conversationId: undefined, stopAfterEnd: true }
  }
  if (stopped.status !== 202)
    fail("stop status", `stop: status ${stopped.status}: ${stopped.body.slice(0, 200)}`)
  const accepted = JSON.parse(stopped.body) as { turn_id?: string }
  if (accepted.turn_id !== metadata.turn_id)
    fail("stop turn id", `stop: turn ${accepted.turn_id}, stream's turn ${metadata.turn_id}`)
  if (error !== "cancelled")
    fail("stop end", `stopped chat: ended with ${error ?? "no error event"}, not cancelled`)
  return { ttfe: read.ttfe, conversationId: undefined }
}

/** Counts of one kind of turn. */
export interface KindCount {
  done: number
  failed: number
}

/** What the workers have done so far; read by the sampler while they run. */
export class Tally {
  readonly kinds: Record<Kind, KindCount> = {
    new: { done: 0, failed: 0 },
    continued: { done: 0, failed: 0 },
    resumed: { done: 0, failed: 0 },
    stopped: { done: 0, failed: 0 }
  }
  /** Stops that found their turn already over. */
  stopsAfterEnd = 0
  /** Failures by check, each with its first few messages. */
  readonly errors = new Map<string, { count: number; samples: Array<string> }>()
  /** TTFE of every `POST /chat`, in milliseconds. */
  readonly ttfe: Array<number> = []

  get total(): number {
    return KINDS.reduce((sum, kind) => sum + this.kinds[kind].done + this.kinds[kind].failed, 0)
  }

  get failed(): number {
    return KINDS.reduce((sum, kind) => sum + this.kinds[kind].failed, 0)
  }

  fail(kind: Kind, check: string, message: string) {
    this.kinds[kind].failed++
    const key = `${kind}: ${check}`
    const entry = this.errors.get(key) ?? { count: 0, samples: [] }
    entry.count++
    if (entry.samples.length < 3) entry.samples.push(message)
    this.errors.set(key, entry)
  }
}

/** A small seeded generator, so each worker's sequence of kinds is the same from run to run. */
const seeded = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let value = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  value = (value + Math.imul(value ^ (value >>> 7), 61 | value)) ^ value
  return ((value ^ (value >>> 14)) >>> 0) / 4_294_967_296
}

/** Options of `run`. */
export interface RunOptions {
  readonly url: string
  readonly concurrency: number
  /** `performance.now()` at which workers start no new turn. */
  readonly until: number
  readonly tally: Tally
  readonly timeoutMs?: number | undefined
}

/** Runs the mix on `concurrency` workers until `until`; failures go to the tally, never throw. */
export const run = async (options: RunOptions): Promise<void> => {
  // Room for each worker's stop request beside its stream.
  const agent = new Agent({ keepAlive: true, maxSockets: options.concurrency * 2 })
  const context: Context = { url: options.url, agent, timeoutMs: options.timeoutMs ?? 30_000 }
  const { tally } = options
  const worker = async (index: number) => {
    const random = seeded(index + 1)
    let conversation: { id: string; turns: number } | undefined
    for (let sequence = 0; performance.now() < options.until; sequence++) {
      const draw = random()
      const kind: Kind =
        draw < MIX.stopped
          ? "stopped"
          : draw < MIX.stopped + MIX.resumed
            ? "resumed"
            : draw < MIX.stopped + MIX.resumed + MIX.continued && conversation !== undefined
              ? "continued"
              : "new"
      // Stops and resumes take the worker's conversation half the time, to mix history in.
      const onConversation =
        conversation !== undefined &&
        conversation.turns < MAX_TURNS &&
        (kind === "continued" || (kind !== "new" && random() < 0.5))
      const conversationId = onConversation ? conversation!.id : undefined
      const turn = onConversation ? conversation!.turns + 1 : 1
      const message = `soak ${kind} ${index} ${sequence}`
      try {
        const outcome =
          kind === "resumed"
            ? await resumedTurn(context, message, conversationId, turn, sequence % 3)
            : kind === "stopped"
              ? await stoppedTurn(context, message, conversationId)
              : await plainTurn(context, message, conversationId, turn)
        tally.kinds[kind].done++
        tally.ttfe.push(outcome.ttfe)
        if (outcome.stopAfterEnd === true) tally.stopsAfterEnd++
        // A stopped turn leaves a cancelled reply behind: the next turn starts afresh.
        conversation =
          outcome.conversationId === undefined
            ? undefined
            : turn >= MAX_TURNS
              ? undefined
              : { id: outcome.conversationId, turns: turn }
      } catch (error) {
        if (error instanceof CheckFailed) tally.fail(kind, error.check, error.message)
        else tally.fail(kind, "client", error instanceof Error ? error.message : String(error))
        conversation = undefined
      }
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, (_, index) => worker(index)))
  agent.destroy()
}
