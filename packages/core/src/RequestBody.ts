/**
 * Reading a request body with a size limit, in the shape
 * `ChatRequest.readWith` expects: a body past the limit is `RequestTooLarge`,
 * one that cannot be read is `InvalidRequest`.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import * as ByteSize from "effect/ByteSize"
import { HttpIncomingMessage, type HttpServerRequest } from "effect/http"
import { InvalidRequest, RequestTooLarge } from "./ChatError.ts"
import type { ReadOptions } from "./ChatRequest.ts"

/** The request's body and headers, read with at most `maxBodyBytes`. */
export const read = (request: HttpServerRequest.HttpServerRequest, maxBodyBytes: number): ReadOptions => ({
  contentType: request.headers["content-type"],
  contentLength: request.headers["content-length"],
  maxBodyBytes,
  body: request.arrayBuffer.pipe(
    Effect.map((buffer) => new Uint8Array(buffer)),
    Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(maxBodyBytes)),
    Effect.mapError((error) =>
      error.reason._tag === "RequestParseError" && error.reason.reason === "BodyTooLarge"
        ? new RequestTooLarge({ limitBytes: maxBodyBytes })
        : new InvalidRequest({ message: "Could not read the request body" })
    )
  )
})
