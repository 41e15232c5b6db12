/**
 * One streamed reply, as returned by `client.chat(...)` (or `client.resume(...)`).
 * The request is already under way when you get it:
 *
 * - `conversationId` (and `metadata`) resolve on the first event, before
 *   the model has said anything;
 * - iterating (`for await (const delta of reply)`) yields text deltas as
 *   they arrive; every iteration sees every delta from the start, so it
 *   does not matter when you begin;
 * - `text` resolves with the whole reply once the stream ends;
 * - a dropped connection after the first event is resumed by itself (see
 *   `ResumeOptions`): the deltas go on in the same iteration, none repeated,
 *   none missed, and `state` says `"reconnecting"` meanwhile;
 * - `stop()` ends the turn on the server (stored as `cancelled`) and the
 *   reply quietly, with the text so far;
 * - `abort()` closes the connection (the server keeps the turn going for its
 *   disconnect grace window, then stores the reply so far as `cancelled`).
 *
 * When the request fails, each of these rejects with the same error
 * (`ConvokeHttpError` before the stream, `ConvokeStreamError` during it, …).
 */
import { ConvokeAbortError } from "./ConvokeError.ts"

/** What the metadata event says about the conversation. */
export interface ChatMetadata {
  readonly conversationId: string
  /** The public model name the server reports. */
  readonly model: string
  /** Server time of the event, Unix seconds. */
  readonly timestamp: number
  /**
   * `true` when the server could not store the conversation yet and handed out
   * an id it will store as soon as it can; resuming with it works once stored.
   */
  readonly temporary: boolean
  /** The turn (this message and its reply) the server runs; `undefined` from servers before turns. */
  readonly turnId: string | undefined
}

/**
 * Where a reply is: `connecting` until the first event, `streaming`,
 * `reconnecting` while a dropped connection is being resumed, then one of
 * `done` (the whole reply arrived), `stopped` (`stop()`), `failed` (an error,
 * or `abort()`).
 */
export type ChatReplyState = "connecting" | "streaming" | "reconnecting" | "done" | "stopped" | "failed"

/** How the client feeds a reply; not part of the public surface. */
export interface ReplySink {
  readonly metadata: (metadata: ChatMetadata) => void
  readonly delta: (text: string) => void
  readonly eventId: (id: string) => void
  readonly state: (state: "streaming" | "reconnecting") => void
  readonly finish: () => void
  readonly fail: (error: unknown) => void
  readonly partialText: () => string
  readonly conversationId: () => string | undefined
  /** Whether `stop()` was called: nothing more is delivered, and no reconnection is worth making. */
  readonly stopping: () => boolean
}

/** Asks the server to stop the running turn of a conversation; not part of the public surface. */
export type StopRequest = (conversationId: string) => Promise<unknown>

const handled = <A>(promise: Promise<A>): Promise<A> => {
  // The caller may use only some of the promises; an unused one must not
  // surface as an unhandled rejection.
  promise.catch(() => {})
  return promise
}

const isEnded = (state: ChatReplyState) => state === "done" || state === "stopped" || state === "failed"

/** A streaming reply; see the module documentation. */
export class ChatReply implements AsyncIterable<string> {
  /** Resolves on the metadata event (the first event of the stream). */
  readonly metadata: Promise<ChatMetadata>
  /** The conversation id, from the metadata event. */
  readonly conversationId: Promise<string>
  /** Whether the id is temporary (see `ChatMetadata.temporary`). */
  readonly temporary: Promise<boolean>
  /** The whole reply once the stream has ended with `[DONE]`; the text so far after `stop()`. */
  readonly text: Promise<string>

  readonly #controller: AbortController
  readonly #stopRequest: StopRequest
  readonly #deltas: Array<string> = []
  readonly #listeners = new Set<(state: ChatReplyState) => void>()
  readonly #end: (state: "done" | "stopped" | "failed", error?: unknown) => void
  #state: ChatReplyState = "connecting"
  #stopping = false
  #stopped: Promise<void> | undefined
  #failure: unknown
  #metadata: ChatMetadata | undefined
  #lastEventId: string | undefined
  #wake: Array<() => void> = []

  /** @internal */
  constructor(controller: AbortController, start: (sink: ReplySink) => void, stopRequest: StopRequest) {
    this.#controller = controller
    this.#stopRequest = stopRequest
    let resolveMetadata!: (metadata: ChatMetadata) => void
    let rejectMetadata!: (error: unknown) => void
    let resolveText!: (text: string) => void
    let rejectText!: (error: unknown) => void
    this.metadata = handled(
      new Promise<ChatMetadata>((resolve, reject) => {
        resolveMetadata = resolve
        rejectMetadata = reject
      })
    )
    this.conversationId = handled(this.metadata.then((metadata) => metadata.conversationId))
    this.temporary = handled(this.metadata.then((metadata) => metadata.temporary))
    this.text = handled(
      new Promise<string>((resolve, reject) => {
        resolveText = resolve
        rejectText = reject
      })
    )
    const wake = () => {
      const waiting = this.#wake
      this.#wake = []
      for (const resume of waiting) resume()
    }
    this.#end = (state, error) => {
      if (isEnded(this.#state)) return
      if (state === "failed") {
        this.#failure = error
        rejectMetadata(error)
        rejectText(error)
      } else {
        if (this.#metadata === undefined) {
          rejectMetadata(new ConvokeAbortError({ partialText: "" }))
        }
        resolveText(this.#deltas.join(""))
      }
      this.#setState(state)
      wake()
    }
    start({
      metadata: (metadata) => {
        if (this.#metadata !== undefined || isEnded(this.#state)) return
        this.#metadata = metadata
        resolveMetadata(metadata)
        if (!this.#stopping) this.#setState("streaming")
      },
      delta: (text) => {
        if (this.#stopping || isEnded(this.#state)) return
        this.#deltas.push(text)
        wake()
      },
      eventId: (id) => {
        if (this.#stopping || isEnded(this.#state)) return
        this.#lastEventId = id
      },
      state: (state) => {
        if (this.#stopping || isEnded(this.#state)) return
        this.#setState(state)
      },
      // While stopping, `stop()` ends the reply itself, whatever the stream did meanwhile.
      finish: () => {
        if (!this.#stopping) this.#end("done")
      },
      fail: (error) => {
        if (!this.#stopping) this.#end("failed", error)
      },
      partialText: () => this.#deltas.join(""),
      conversationId: () => this.#metadata?.conversationId,
      stopping: () => this.#stopping
    })
  }

  /** Where the reply is; see `ChatReplyState`. `onStateChange` tells when it changes. */
  get state(): ChatReplyState {
    return this.#state
  }

  /**
   * Calls `listener` with each new state (not the current one). Returns the
   * function that unsubscribes it.
   */
  onStateChange(listener: (state: ChatReplyState) => void): () => void {
    this.#listeners.add(listener)
    return () => {
      this.#listeners.delete(listener)
    }
  }

  /**
   * The id (`<turn_id>:<seq>`) of the last event received, if any: pass it to
   * `client.resume({ conversationId, lastEventId })` to continue elsewhere.
   */
  get lastEventId(): string | undefined {
    return this.#lastEventId
  }

  /** The metadata, if the first event has arrived (synchronous peek). */
  get currentMetadata(): ChatMetadata | undefined {
    return this.#metadata
  }

  /** The text received so far. */
  get partialText(): string {
    return this.#deltas.join("")
  }

  /**
   * Stops the reply. After the metadata event it asks the server to stop the
   * turn (the reply is stored as `cancelled`); before it, the request is
   * aborted and nothing is created. Either way the reply ends quietly:
   * iterations end after the deltas already received, `text` resolves with
   * the text so far and `state` becomes `"stopped"` (`metadata` rejects with
   * `ConvokeAbortError` when it never came). Deltas that arrive after the call
   * are dropped. The promise rejects when the server's stop request fails;
   * the reply has ended all the same. Does nothing once the reply has ended.
   */
  stop(): Promise<void> {
    if (this.#stopped !== undefined) return this.#stopped
    if (isEnded(this.#state)) return Promise.resolve()
    this.#stopping = true
    const metadata = this.#metadata
    const stopping =
      metadata === undefined
        ? Promise.resolve()
        : Promise.resolve().then(() => this.#stopRequest(metadata.conversationId))
    this.#stopped = stopping.then(
      () => this.#finishStop(),
      (error: unknown) => {
        this.#finishStop()
        throw error
      }
    )
    return this.#stopped
  }

  #finishStop(): void {
    this.#end("stopped")
    this.#controller.abort(
      new ConvokeAbortError({ conversationId: this.#metadata?.conversationId, partialText: this.partialText })
    )
  }

  /**
   * Closes the connection without stopping the turn: the server keeps it
   * going for its disconnect grace window, then stores the partial reply.
   * Before the metadata event nothing is created. Pending promises and
   * iterations reject with `ConvokeAbortError` (`name === "AbortError"`).
   */
  abort(): void {
    this.#controller.abort(
      new ConvokeAbortError({ conversationId: this.#metadata?.conversationId, partialText: this.partialText })
    )
  }

  /** Text deltas as they arrive; throws the reply's error, if any, after the last delta. */
  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    let index = 0
    while (true) {
      if (index < this.#deltas.length) {
        yield this.#deltas[index++]!
        continue
      }
      if (this.#state === "done" || this.#state === "stopped") return
      if (this.#state === "failed") throw this.#failure
      await new Promise<void>((resume) => this.#wake.push(resume))
    }
  }

  #setState(state: ChatReplyState): void {
    if (this.#state === state) return
    this.#state = state
    for (const listener of [...this.#listeners]) {
      try {
        listener(state)
      } catch {
        // A listener's failure is its own; the reply goes on.
      }
    }
  }
}
