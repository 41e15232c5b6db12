/** The Function URL's handler (`InvokeMode: RESPONSE_STREAM`): `streaming.handler`. */
import { LambdaHandler } from "@convoke/lambda"
import { source } from "./layer.ts"

export const handler = LambdaHandler.streaming(source)
