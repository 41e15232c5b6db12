/** The Function URL's handler (`InvokeMode: RESPONSE_STREAM`): `streaming.handler`. */
import { LambdaHandler } from "@convoke/lambda"
import { layer } from "./layer.ts"

export const handler = LambdaHandler.streaming(layer)
