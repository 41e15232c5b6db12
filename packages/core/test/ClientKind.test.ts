import { assert, describe, it } from "@effect/vitest"
import { ClientKind } from "../src/index.ts"

describe("ClientKind.detect", () => {
  it("trusts the X-Convoke-Client header first, whatever the User-Agent", () => {
    const browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
    assert.strictEqual(ClientKind.detect({ "x-convoke-client": "unity", "user-agent": browser }), "unity")
    assert.strictEqual(ClientKind.detect({ "x-convoke-client": "Unity/2.1.0" }), "unity")
    assert.strictEqual(ClientKind.detect({ "x-convoke-client": "mobile" }), "mobile")
    assert.strictEqual(ClientKind.detect({ "x-convoke-client": "web" }), "web")
    assert.strictEqual(ClientKind.detect({ "x-convoke-client": "node/0.3.0" }), "node")
    assert.strictEqual(
      ClientKind.detect({ "x-convoke-client": "toaster/1.0", "user-agent": browser }),
      "other"
    )
  })

  it("falls back to the User-Agent", () => {
    const cases: ReadonlyArray<readonly [string, ClientKind.ClientKind]> = [
      ["UnityPlayer/2022.3.20f1 (UnityWebRequest/1.0, libcurl/8.4.0-DEV)", "unity"],
      [
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36",
        "mobile"
      ],
      ["Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148", "mobile"],
      ["okhttp/4.12.0", "mobile"],
      ["MyApp/3 CFNetwork/1568.100.1 Darwin/24.0.0", "mobile"],
      ["Dart/3.5 (dart:io)", "mobile"],
      [
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/18.0 Safari/605.1.15",
        "web"
      ],
      ["Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "web"],
      ["curl/8.5.0", "other"],
      ["node", "other"],
      ["python-requests/2.32.3", "other"]
    ]
    for (const [userAgent, kind] of cases)
      assert.strictEqual(ClientKind.detect({ "user-agent": userAgent }), kind, userAgent)
    assert.strictEqual(ClientKind.detect({}), "other")
  })
})
