/**
 * The version of `@convoke/client`, sent in `X-Convoke-Client` so the server
 * can count clients by kind and version. A test keeps it equal to
 * `package.json`'s version.
 */

/** This package's version. */
export const VERSION = "0.1.0"
