/**
 * `@convoke/auth`: identity providers for Convoke beyond the core's API keys —
 * JSON Web Tokens verified with `jose` (HS256 secrets, JWKS key sets).
 *
 * @since 0.1.0
 */
export * as JwtIdentity from "./JwtIdentity.ts"
