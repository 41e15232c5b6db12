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

/** The part of the runtime's `awslambda` global that response streaming uses. */
export interface Runtime {
  streamifyResponse<E>(
    handler: (event: E, responseStream: Writable, context: unknown) => Promise<void>
  ): (event: E, responseStream: Writable, context: unknown) => Promise<void>
  /** Writes the prelude (status, headers, cookies) before the first byte of the body. */
  HttpResponseStream: { from(stream: Writable, prelude: object): Writable }
}

const MISSING =
  "LambdaHandler.streaming needs the `awslambda` global of the AWS Lambda Node.js runtime; use LambdaHandler.buffered elsewhere"

/** The `awslambda` global, or a clear error outside the Lambda Node.js runtime. */
export const get = (): Runtime => {
  const awslambda = (globalThis as { awslambda?: Runtime }).awslambda
  if (awslambda === undefined) throw new Error(MISSING)
  return awslambda
}
