/**
 * `@convoke/fastify`: Convoke's v0.3 streaming chat endpoint as a Fastify
 * plugin.
 *
 * @since 0.1.0
 */
export * as FastifyPlugin from "./FastifyPlugin.ts"
