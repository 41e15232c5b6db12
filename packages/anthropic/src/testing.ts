/**
 * Test support for code that uses `@convoke/anthropic` (`@convoke/anthropic/testing`):
 * `FakeAnthropic`, a fake Anthropic Messages API on loopback that speaks the
 * real SSE wire format, so the real SDK can be driven through its base URL.
 *
 * @since 0.2.0
 */
export * as FakeAnthropic from "./FakeAnthropic.ts"
