/**
 * One streamed reply, as returned by `client.chat(...)`. The request is
 * already under way when you get it:
 *
 * - `conversationId` (and `metadata`) resolve on the first event, before
 *   the model has said anything;
 * - iterating (`for await (const delta of reply)`) yields text deltas as
 *   they arrive; every iteration sees every delta from the start, so it
 *   does not matter when you begin;
 * - `text` resolves with the whole reply once the stream ends;
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
}

/** How the client feeds a reply; not part of the public surface. */
export interface ReplySink {
  readonly metadata: (metadata: ChatMetadata) => void
  readonly delta: (text: string) => void
  readonly finish: () => void
  readonly fail: (error: unknown) => void
  readonly partialText: () => string
  readonly conversationId: () => string | undefined
}

const handled = <A>(promise: Promise<A>): Promise<A> => {
  // The caller may use only some of the promises; an unused one must not
  // surface as an unhandled rejection.
  promise.catch(() => {})
  return promise
}

/** A streaming reply; see the module documentation. */
export class ChatReply implements AsyncIterable<string> {
  /** Resolves on the metadata event (the first event of the stream). */
  readonly metadata: Promise<ChatMetadata>
  /** The conversation id, from the metadata event. */
  readonly conversationId: Promise<string>
  /** Whether the id is temporary (see `ChatMetadata.temporary`). */
  readonly temporary: Promise<boolean>
  /** The whole reply, once the stream has ended with `[DONE]`. */
  readonly text: Promise<string>

  readonly #controller: AbortController
  readonly #deltas: Array<string> = []
  #state: "streaming" | "done" | "failed" = "streaming"
  #failure: unknown
  #metadata: ChatMetadata | undefined
  #wake: Array<() => void> = []

  /** @internal */
  constructor(controller: AbortController, start: (sink: ReplySink) => void) {
    this.#controller = controller
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
    start({
      metadata: (metadata) => {
        this.#metadata = metadata
        resolveMetadata(metadata)
      },
      delta: (text) => {
        this.#deltas.push(text)
        wake()
      },
      finish: () => {
        if (this.#state !== "streaming") return
        this.#state = "done"
        resolveText(this.#deltas.join(""))
        wake()
      },
      fail: (error) => {
        if (this.#state !== "streaming") return
        this.#state = "failed"
        this.#failure = error
        rejectMetadata(error)
        rejectText(error)
        wake()
      },
      partialText: () => this.#deltas.join(""),
      conversationId: () => this.#metadata?.conversationId
    })
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
   * Stops the request. Before the metadata event nothing is created; after
   * it the server keeps the partial reply. Pending promises and iterations
   * reject with `ConvokeAbortError` (`name === "AbortError"`).
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
      if (this.#state === "done") return
      if (this.#state === "failed") throw this.#failure
      await new Promise<void>((resume) => this.#wake.push(resume))
    }
  }
}
