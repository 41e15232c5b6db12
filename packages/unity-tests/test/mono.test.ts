/**
 * The Unity package's runtime compiled without Unity by Mono's `mcs`, and its
 * C# tests (`packages/unity/Tests`) run by `mono` against the reference server
 * (one without keys, one that checks them), a faulty server and cut proxies
 * on loopback: HTTP/SSE and WebSocket transports alike. Each C# test is one test here, so the
 * totals count them.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { hasMono, listTests, mcs, notRun, resultOf, runnable, runTests, sources } from "./csharp.ts"
import { aliceKey, startFaultyServer, startProxyControl, startReferenceServer } from "./servers.ts"

const unity = fileURLToPath(new URL("../../unity/", import.meta.url))
const unitySources = (folder: string) => sources(join(unity, folder))

const build = mkdtempSync(join(tmpdir(), "convoke-mono-"))
const executable = join(build, "ConvokeClientTests.exe")
const compile = hasMono
  ? mcs([
      "-r:System.Net.Http.dll",
      `-out:${executable}`,
      ...unitySources("Runtime"),
      ...unitySources("Tests")
    ])
  : undefined
// The samples and the Unity-only runtime (the PlayerPrefs store, the
// UnityWebRequest transport), as Unity would compile them
// (UNITY_5_3_OR_NEWER), against the stubs of the UnityEngine types they use.
const stubs = sources(fileURLToPath(new URL("../stubs/", import.meta.url)))
const samples = hasMono
  ? mcs([
      "-target:library",
      "-d:UNITY_5_3_OR_NEWER",
      "-r:System.Net.Http.dll",
      `-out:${join(build, "Samples.dll")}`,
      ...unitySources("Runtime"),
      ...unitySources("Samples~/Conversations"),
      ...unitySources("Samples~/BasicChat"),
      ...stubs
    ])
  : undefined
const names = compile?.status === 0 ? listTests(executable) : []

describe.skipIf(!runnable)("Unity package under Mono", () => {
  let run = notRun
  let closers: Array<() => Promise<void>> = []

  beforeAll(async () => {
    if (compile?.status !== 0) return
    const [reference, faulty] = await Promise.all([startReferenceServer(), startFaultyServer()])
    closers = [reference.close, faulty.close]
    // The keyed server checks API keys, on HTTP and on the WebSocket upgrade. Started after the
    // first: embedded databases starting side by side can time out on a busy machine.
    const keyed = await startReferenceServer({ CONVOKE_API_KEYS: `${aliceKey}:alice` })
    const control = await startProxyControl(reference.url)
    closers = [control.close, ...closers, keyed.close]
    run = await runTests(executable, names, [
      "--reference",
      reference.url,
      "--faulty",
      faulty.url,
      "--proxies",
      control.url,
      "--metrics",
      reference.metricsUrl ?? "",
      "--keyed",
      keyed.url
    ])
  })

  afterAll(async () => {
    await Promise.all(closers.map((close) => close()))
    rmSync(build, { recursive: true, force: true })
  })

  it("compiles the runtime and the tests with mcs", () => {
    expect(hasMono, "mcs and mono must be installed (apt-get install mono-mcs mono-runtime)").toBe(true)
    expect(compile?.stderr ?? "", compile?.stdout ?? "").not.toMatch(/error CS/)
    expect(compile?.status).toBe(0)
    expect(names.length).toBeGreaterThan(0)
  })

  it("compiles the samples, the PlayerPrefs store and the UnityWebRequest transport against the UnityEngine stubs", () => {
    expect(samples?.stderr ?? "", samples?.stdout ?? "").not.toMatch(/error CS/)
    expect(samples?.status).toBe(0)
  })

  it.each(names)("%s", (name) => {
    expect(resultOf(run, name)).toBe("PASS")
  })
})
