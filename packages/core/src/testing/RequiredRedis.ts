/**
 * The Redis a test suite needs: where it is (`REDIS_URL`, else
 * `redis://127.0.0.1:6379`) and whether it answers, for `requireService`.
 *
 * @since 0.3.0
 */
import { connect } from "node:net"

/** The Redis tests use: `REDIS_URL`, else the local default. */
export const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379"

/** Whether something answers `PING` at `url` within two seconds. */
export const isRedisReachable = (url: string = REDIS_URL): Promise<boolean> =>
  new Promise((resolve) => {
    const { hostname, port } = new URL(url)
    const socket = connect({
      host: hostname.replace(/^\[|\]$/g, "") || "127.0.0.1",
      port: Number(port || 6379)
    })
    const answer = (reachable: boolean) => {
      socket.destroy()
      resolve(reachable)
    }
    socket.setTimeout(2_000, () => answer(false))
    socket.once("error", () => answer(false))
    socket.once("connect", () => socket.write("PING\r\n"))
    socket.once("data", () => answer(true))
  })
