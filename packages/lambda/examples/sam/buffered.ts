/** The HTTP API's handler (buffered replies): `buffered.handler`. */
import { LambdaHandler } from "@convoke/lambda"
import { source } from "./layer.ts"

export const handler = LambdaHandler.buffered(source)
