/**
 * Test support for Lambda handlers (`@convoke/lambda/testing`):
 * `LambdaHarness`, a loopback stand-in for the AWS Lambda Node.js runtime
 * (the `awslambda` global) and the Function URL / API Gateway front door, so
 * a test talks plain HTTP to a streaming handler.
 *
 * @since 0.2.0
 */
export * as LambdaHarness from "./testing/LambdaHarness.ts"
