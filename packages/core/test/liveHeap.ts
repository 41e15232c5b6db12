import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"

// `gc` from a context made while `--expose-gc` is set; the flag is unset at once.
setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void
setFlagsFromString("--no-expose-gc")

/** The heap still in use after two full collections, in bytes. */
export const liveHeap = (): number => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}
