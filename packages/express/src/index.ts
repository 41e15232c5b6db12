/**
 * `@convoke/express`: Convoke's v0.3 streaming chat endpoint as Express
 * middleware.
 *
 * @since 0.1.0
 */
export * as ExpressMiddleware from "./ExpressMiddleware.ts"
