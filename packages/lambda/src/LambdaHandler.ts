/**
 * Convoke on AWS Lambda. `streaming` answers through Lambda response
 * streaming (Function URLs with `InvokeMode: RESPONSE_STREAM`, API Gateway
 * REST APIs with `responseTransferMode: STREAM`): the metadata event leaves
 * as soon as the conversation is resolved. `buffered` returns one result for
 * integrations that cannot stream (API Gateway HTTP APIs).
 *
 * The app — the Effect runtime and its layers, database pool included — is
 * built once per container, at init, and reused by every invocation.
 *
 * @since 0.1.0
 */
import { Readable } from "node:stream"
import { pipeline } from "node:stream/promises"
import { ChatHttp, type ConversationStore, type Identity, type LanguageModel } from "@convoke/core"
import { NodeHandler } from "@convoke/core/node"
import type { Layer } from "effect"
import type { HttpServerRequest } from "effect/http"
import * as LambdaEvent from "./LambdaEvent.ts"
import * as LambdaRuntime from "./LambdaRuntime.ts"

/**
 * What the handlers use of an app: its web handler and its lifecycle, and
 * the application itself when it has one (`ChatHttp.App` does), which the
 * streaming handler serves natively.
 */
export type Served = Pick<ChatHttp.App, "handler" | "shutdown" | "dispose"> & {
  readonly http?: ChatHttp.HttpApp | undefined
}

/** What to serve: layers (built once per container), a built app, or a function that builds one. */
export type Source =
  | Layer.Layer<
      ConversationStore.ConversationStore | LanguageModel.LanguageModel | Identity.Identity,
      unknown
    >
  | Served
  | (() => Promise<Served>)

/** Options of both handlers. */
export interface Options {
  /** A path prefix to strip before routing (an HTTP API stage, a custom domain's base path). */
  readonly basePath?: string | undefined
}

/** Builds the app on first use and keeps it; a failed build is retried by the next invocation. */
const once = (source: Source): (() => Promise<Served>) => {
  let app: Promise<Served> | undefined
  const build = (): Promise<Served> =>
    typeof source === "function"
      ? source()
      : "handler" in source
        ? Promise.resolve(source)
        : ChatHttp.makeApp(source)
  const get = () =>
    (app ??= build().catch((error) => {
      app = undefined
      throw error
    }))
  // Start during the init phase; an invocation awaits the same promise.
  get().catch((error) =>
    console.error("Convoke: building the app failed; retrying on the next request", error)
  )
  return get
}

const unavailable = () =>
  Response.json(
    { error: { type: "unavailable", message: "The service is starting or unavailable" } },
    { status: 503, headers: { "retry-after": "1" } }
  )

const invalidEvent = () =>
  Response.json(
    { error: { type: "invalid_request", message: "Not an HTTP event of payload format 1.0 or 2.0" } },
    { status: 400 }
  )

/** The web response of an app (`undefined` while it cannot be built) to an event. */
const respond = (
  built: Served | undefined,
  event: LambdaEvent.Event,
  options: LambdaEvent.RequestOptions
): Promise<Response> => {
  let request: Request
  try {
    request = LambdaEvent.toRequest(event, options)
  } catch {
    return Promise.resolve(invalidEvent())
  }
  return built === undefined ? Promise.resolve(unavailable()) : built.handler(request)
}

/** Writes a web `Response` to the response stream: the prelude, then the body as it comes. */
const writeWeb = async (
  awslambda: LambdaRuntime.Runtime,
  response: Response,
  responseStream: LambdaRuntime.ResponseStream
): Promise<void> => {
  const stream = awslambda.HttpResponseStream.from(responseStream, LambdaEvent.preludeOf(response))
  // The prelude goes out with the first write: an empty body still writes once.
  if (response.body === null) stream.end("")
  else await pipeline(Readable.fromWeb(response.body as never), stream)
}

/**
 * Serves an event natively (`NodeHandler.serve`): the app reads the event
 * and writes the response stream with no web `Request` or `Response`
 * between them.
 */
const serveNative = (
  awslambda: LambdaRuntime.Runtime,
  http: ChatHttp.HttpApp,
  event: LambdaEvent.Event,
  responseStream: LambdaRuntime.ResponseStream,
  options: Options
): Promise<void> => {
  let request: HttpServerRequest.HttpServerRequest
  try {
    request = LambdaEvent.toServerRequest(event, { basePath: options.basePath })
  } catch {
    return writeWeb(awslambda, invalidEvent(), responseStream)
  }
  return NodeHandler.serve(http, request, {
    stream: responseStream,
    start: (status, headers) => {
      const stream = awslambda.HttpResponseStream.from(
        responseStream,
        LambdaEvent.preludeOfHead(status, headers)
      )
      // The prelude now, as a Node response sends its head: a response with no body writes nothing else.
      stream.write("")
      return stream
    }
  })
}

/** Serves an event through the app's web handler (a source with no application). */
const serveWeb = async (
  awslambda: LambdaRuntime.Runtime,
  built: Served | undefined,
  event: LambdaEvent.Event,
  responseStream: LambdaRuntime.ResponseStream,
  options: Options
): Promise<void> => {
  const controller = new AbortController()
  const onClose = () => {
    if (!responseStream.writableFinished) controller.abort()
  }
  responseStream.once("close", onClose)
  try {
    const response = await respond(built, event, { signal: controller.signal, basePath: options.basePath })
    await writeWeb(awslambda, response, responseStream)
  } finally {
    responseStream.off("close", onClose)
  }
}

/**
 * The streaming handler: `export const handler = LambdaHandler.streaming(layer)`.
 * A client that goes away destroys the response stream, which interrupts
 * the request and the model (the partial reply is stored).
 */
export const streaming = (source: Source, options: Options = {}) => {
  const awslambda = LambdaRuntime.get()
  const app = once(source)
  return awslambda.streamifyResponse<LambdaEvent.Event>(async (event, responseStream) => {
    const built = await app().catch(() => undefined)
    try {
      if (built?.http !== undefined) await serveNative(awslambda, built.http, event, responseStream, options)
      else await serveWeb(awslambda, built, event, responseStream, options)
    } catch {
      // The client left (the stream was destroyed) while a web body was piped to it.
      if (!responseStream.destroyed) responseStream.destroy()
    }
  })
}

/** The buffered handler for API Gateway HTTP APIs (and any integration that cannot stream). */
export const buffered = (source: Source, options: Options = {}) => {
  const app = once(source)
  return async (event: LambdaEvent.Event): Promise<LambdaEvent.ResultV1 | LambdaEvent.ResultV2> =>
    LambdaEvent.toResult(event, await respond(await app().catch(() => undefined), event, options))
}
