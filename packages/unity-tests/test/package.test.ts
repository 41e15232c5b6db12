/**
 * The Unity package's shape: what Unity's Package Manager needs to import it
 * from a git URL (a manifest, and a `.meta` with a unique GUID beside every
 * asset, since git packages are read-only and Unity ignores assets without
 * one), the rule that only the Unity-only files (the UnityWebRequest transport
 * and the PlayerPrefs store) touch UnityEngine, and the version the client
 * reports in `X-Convoke-Client` and `User-Agent`.
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const unity = fileURLToPath(new URL("../../unity/", import.meta.url))

/** Every asset Unity imports: files and folders, except hidden and `~` folders. */
const assets = (folder: string): Array<string> =>
  readdirSync(folder).flatMap((name) => {
    if (name.startsWith(".") || name.endsWith("~") || name.endsWith(".meta")) return []
    const path = join(folder, name)
    return statSync(path).isDirectory() ? [path, ...assets(path)] : [path]
  })

describe("Unity package layout", () => {
  it("has a UPM manifest with a reverse-domain name, a version and a Unity version", () => {
    const manifest = JSON.parse(readFileSync(join(unity, "package.json"), "utf8"))
    expect(manifest.name).toBe("com.convoke.client")
    expect(manifest.version).toMatch(/^\d+\.\d+\.\d+$/)
    expect(manifest.unity).toMatch(/^\d{4}\.\d$/)
    expect(manifest.samples[0].path).toBe("Samples~/BasicChat")
    expect(statSync(join(unity, manifest.samples[0].path)).isDirectory()).toBe(true)
  })

  it("has a .meta file with a unique GUID for every asset", () => {
    const guids = new Map<string, string>()
    for (const asset of assets(unity)) {
      const name = relative(unity, asset)
      const meta = readFileSync(`${asset}.meta`, "utf8")
      const guid = /^guid: ([0-9a-f]{32})$/m.exec(meta)?.[1]
      expect(guid, `${name}.meta has a guid`).toBeDefined()
      expect(guids.get(guid!), `${name} reuses a guid`).toBeUndefined()
      guids.set(guid!, name)
    }
    expect(guids.size).toBeGreaterThan(10)
  })

  it("uses UnityEngine only in the Unity-only files, inside #if UNITY_5_3_OR_NEWER", () => {
    const runtime = join(unity, "Runtime")
    const unityOnly = ["UnityWebRequestTransport.cs", "PlayerPrefsConversationIdStore.cs"]
    for (const file of readdirSync(runtime).filter((name) => name.endsWith(".cs"))) {
      const source = readFileSync(join(runtime, file), "utf8")
      if (unityOnly.includes(file)) {
        const guard = source.indexOf("#if UNITY_5_3_OR_NEWER")
        expect(guard).toBeGreaterThanOrEqual(0)
        expect(source.indexOf("using UnityEngine")).toBeGreaterThan(guard)
        expect(source.trimEnd().endsWith("#endif")).toBe(true)
      } else {
        expect(source, file).not.toMatch(/UnityEngine/)
      }
    }
  })

  it("reports the package.json version in X-Convoke-Client", () => {
    const manifest = JSON.parse(readFileSync(join(unity, "package.json"), "utf8"))
    const client = readFileSync(join(unity, "Runtime", "ConvokeClient.cs"), "utf8")
    expect(/public const string Version = "([^"]+)";/.exec(client)?.[1]).toBe(manifest.version)
  })
})
