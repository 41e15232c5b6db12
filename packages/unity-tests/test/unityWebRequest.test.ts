/**
 * The Unity package's UnityWebRequest transport, compiled by Mono's `mcs`
 * with `UNITY_5_3_OR_NEWER` against a stub of the UnityEngine networking
 * surface it uses (`stubs/`), and its C# tests (`csharp/`) run by `mono`
 * against the reference server and the faulty server. Each C# test is one
 * test here. Also checks that the ordinary build, without the define, leaves
 * the transport and UnityEngine out.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { hasMono, listTests, mcs, notRun, resultOf, runnable, runTests, sources } from "./csharp.ts"
import { startFaultyServer, startReferenceServer } from "./servers.ts"

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url))

const runtime = sources(here("../../unity/Runtime/"))
const stubs = sources(here("../stubs/"))
// The runner and the assertions the package's own C# tests use.
const support = here("../../unity/Tests/TestSupport.cs")
const tests = sources(here("../csharp/"))

const build = mkdtempSync(join(tmpdir(), "convoke-uwr-"))
const executable = join(build, "UnityWebRequestTransportTests.exe")
const library = join(build, "Convoke.Client.dll")
const compile = hasMono
  ? mcs([
      "-define:UNITY_5_3_OR_NEWER",
      "-r:System.Net.Http.dll",
      `-out:${executable}`,
      ...runtime,
      ...stubs,
      support,
      ...tests
    ])
  : undefined
const names = compile?.status === 0 ? listTests(executable) : []

describe.skipIf(!runnable)("Unity package: UnityWebRequest transport under Mono", () => {
  let run = notRun
  let closers: Array<() => Promise<void>> = []

  beforeAll(async () => {
    if (compile?.status !== 0) return
    const [reference, faulty] = await Promise.all([startReferenceServer(), startFaultyServer()])
    closers = [reference.close, faulty.close]
    run = await runTests(executable, names, ["--reference", reference.url, "--faulty", faulty.url])
  })

  afterAll(async () => {
    await Promise.all(closers.map((close) => close()))
    rmSync(build, { recursive: true, force: true })
  })

  it("compiles the runtime with UNITY_5_3_OR_NEWER against the stub, without warnings in the runtime", () => {
    expect(hasMono, "mcs and mono must be installed (apt-get install mono-mcs mono-runtime)").toBe(true)
    const diagnostics = `${compile?.stdout ?? ""}${compile?.stderr ?? ""}`
    expect(diagnostics).not.toMatch(/error CS/)
    expect(diagnostics).not.toMatch(/Runtime\/\w+\.cs\(\d+,\d+\): warning/)
    expect(compile?.status).toBe(0)
    expect(names.length).toBeGreaterThan(0)
  })

  it("leaves the transport and UnityEngine out of the ordinary build", () => {
    expect(hasMono).toBe(true)
    const plain = mcs(["-target:library", "-r:System.Net.Http.dll", `-out:${library}`, ...runtime])
    expect(`${plain.stdout}${plain.stderr}`).not.toMatch(/error CS|warning CS/)
    expect(plain.status).toBe(0)
    const assembly = readFileSync(library)
    expect(assembly.includes("UnityWebRequestTransport")).toBe(false)
    expect(assembly.includes("UnityEngine")).toBe(false)
    expect(assembly.includes("DownloadRelay")).toBe(true)
  })

  it.each(names)("%s", (name) => {
    expect(resultOf(run, name)).toBe("PASS")
  })
})
