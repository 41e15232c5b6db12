/**
 * `@convoke/lambda`: Convoke's v0.3 streaming chat endpoint on AWS Lambda,
 * with response streaming.
 *
 * @since 0.1.0
 */
export * as LambdaEvent from "./LambdaEvent.ts"
export * as LambdaHandler from "./LambdaHandler.ts"
export * as LambdaRuntime from "./LambdaRuntime.ts"
