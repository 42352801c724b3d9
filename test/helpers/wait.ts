// Waiting for a condition in a test: fails with what was awaited instead of
// hanging the file when it never holds. The limit guards against a hang; it
// is not a timing assertion, so keep it generous.
import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'

/** Polls `condition` until it holds; returns the ms it took, or fails naming `what` after `limitMs`. */
export async function waitFor (what: string, limitMs: number, condition: () => boolean): Promise<number> {
  const start = performance.now()
  while (!condition()) {
    const ms = performance.now() - start
    assert.ok(ms <= limitMs, `${what}: not within ${limitMs} ms`)
    await sleep(10)
  }
  return performance.now() - start
}
