/**
 * The AWS Lambda Node.js runtime's response-streaming API, the `awslambda`
 * global: `streamifyResponse` marks a handler as streaming, and
 * `HttpResponseStream.from` writes the status and headers as a JSON prelude
 * (then 8 NUL bytes) before the first body byte. It exists only inside the
 * runtime, so it is looked up when a handler is created, not imported.
 *
 * @since 0.1.0
 */
import type { Writable } from "node:stream"

/** The response stream the Node.js runtime passes to a streaming handler. */
export interface ResponseStream extends Writable {
  setContentType(contentType: string): void
}

/** The part of the runtime's `awslambda` global that response streaming uses. */
export interface Runtime {
  streamifyResponse<E>(
    handler: (event: E, responseStream: ResponseStream, context: unknown) => Promise<void>
  ): (event: E, responseStream: ResponseStream, context: unknown) => Promise<void>
  HttpResponseStream: {
    from(stream: ResponseStream, prelude: Record<string, unknown>): ResponseStream
  }
}

/** The `awslambda` global, or a clear error outside the Lambda Node.js runtime. */
export const get = (): Runtime => {
  const awslambda = (globalThis as { awslambda?: Runtime }).awslambda
  if (awslambda === undefined) {
    throw new Error(
      "LambdaHandler.streaming needs the `awslambda` global of the AWS Lambda Node.js runtime; use LambdaHandler.buffered elsewhere"
    )
  }
  return awslambda
}
