/**
 * The version of `@convoke/client`, sent in `X-Convoke-Client` so the server
 * can count clients by kind and version. `npm run version-packages` keeps it
 * equal to `package.json`'s version (scripts/sync-versions.mjs), and a test
 * checks that it is.
 */

/** This package's version. */
export const VERSION = "0.1.0"
