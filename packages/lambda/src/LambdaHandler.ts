/**
 * Convoke on AWS Lambda. `streaming` answers through Lambda response
 * streaming (Function URLs with `InvokeMode: RESPONSE_STREAM`, API Gateway
 * REST APIs with `responseTransferMode: STREAM`): the metadata event leaves
 * as soon as the conversation is resolved. `buffered` returns one result for
 * integrations that cannot stream (API Gateway HTTP APIs). Both serve the
 * whole API through the core's Node binding (`NodeHandler.makeServe`): the
 * event becomes the core's request, the response goes to the runtime's
 * response stream or into a buffer.
 *
 * The app — the Effect runtime and its layers, database pool included — is
 * built once per container, at init, and reused by every invocation.
 *
 * An invocation returns once no turn runs (`App.settled`), not when its
 * response ends: Lambda freezes the process between invocations, and a turn
 * whose client went away keeps going for the disconnect grace window (to be
 * resumed through `GET …/stream`, which another invocation serves when the
 * turn log is shared, `RedisTurnLog`). With no reader back in time the turn
 * is cancelled and the invocation ends; a zero grace ends it at once.
 *
 * @since 0.1.0
 */
import type { OutgoingHttpHeaders } from "node:http"
import { PassThrough } from "node:stream"
import { buffer } from "node:stream/consumers"
import { ChatHttp } from "@convoke/core"
import { NodeHandler } from "@convoke/core/node"
import type * as Layer from "effect/Layer"
import * as LambdaEvent from "./LambdaEvent.ts"
import * as LambdaRuntime from "./LambdaRuntime.ts"

/** What to serve: layers (built once per container), a built app, or a function that builds one. */
export type Source = Layer.Layer<ChatHttp.Services, unknown> | ChatHttp.App | (() => Promise<ChatHttp.App>)

/** Options of both handlers. */
export interface Options {
  /** A path prefix to strip before routing (an HTTP API stage, a custom domain's base path). */
  readonly basePath?: string | undefined
}

const build = (source: Source): Promise<ChatHttp.App> =>
  typeof source === "function"
    ? source()
    : Promise.resolve("http" in source ? source : ChatHttp.makeApp(source))

/** Serves one event to a destination, the app built on first use; a failed build is retried next time. */
const serveEvents = (source: Source, options: Options) => {
  let serve: Promise<{ readonly app: ChatHttp.App; readonly serve: NodeHandler.Serve }> | undefined
  const forget = (error: unknown) => {
    serve = undefined
    throw error
  }
  const get = () =>
    (serve ??= build(source)
      .then((app) => ({ app, serve: NodeHandler.makeServe(app) }))
      .catch(forget))
  // Start during the init phase; an invocation awaits the same promise.
  get().catch((error: unknown) =>
    console.error("Convoke: building the app failed; retrying on the next request", error)
  )
  return async (event: LambdaEvent.Event, destination: NodeHandler.Destination): Promise<void> => {
    const ready = await get().catch(() => undefined)
    if (ready === undefined)
      return NodeHandler.writeErrorTo(destination, 503, "The service is starting or unavailable")
    let request: ReturnType<typeof LambdaEvent.toServerRequest>
    try {
      request = LambdaEvent.toServerRequest(event, options)
    } catch {
      return NodeHandler.writeErrorTo(destination, 400, "Not an HTTP event of payload format 1.0 or 2.0")
    }
    await ready.serve(request, destination)
    await ready.app.settled()
  }
}

/**
 * The streaming handler: `export const handler = LambdaHandler.streaming(layer)`.
 * A client that goes away destroys the response stream; the turn goes on for
 * the grace window, then is cancelled (the partial reply is stored) unless a
 * reader came back.
 */
export const streaming = (source: Source, options: Options = {}) => {
  const awslambda = LambdaRuntime.get()
  const serve = serveEvents(source, options)
  return awslambda.streamifyResponse<LambdaEvent.Event>((event, responseStream) =>
    serve(event, {
      stream: responseStream,
      start: (status, headers) => {
        const stream = awslambda.HttpResponseStream.from(responseStream, LambdaEvent.headOf(status, headers))
        // The prelude now, as a Node response sends its head: a response with no body writes nothing else.
        stream.write("")
        return stream
      }
    })
  )
}

/** The buffered handler for API Gateway HTTP APIs (and any integration that cannot stream). */
export const buffered = (source: Source, options: Options = {}) => {
  const serve = serveEvents(source, options)
  return async (event: LambdaEvent.Event): Promise<LambdaEvent.ResultV1 | LambdaEvent.ResultV2> => {
    const body = new PassThrough()
    const bytes = buffer(body)
    const sent: { head?: LambdaEvent.Head } = {}
    const start = (status: number, headers: OutgoingHttpHeaders) => {
      sent.head = LambdaEvent.headOf(status, headers)
      return body
    }
    await serve(event, { stream: body, start })
    return LambdaEvent.toResult(event, sent.head!, await bytes)
  }
}
