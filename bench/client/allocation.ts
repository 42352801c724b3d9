/**
 * Bytes a client allocates per command, from V8's heap statistics (objects,
 * strings, promises) and `process.memoryUsage().arrayBuffers` (Buffers'
 * memory outside the heap). Both only grow between garbage collections, so
 * a run of commands is measured and kept only if no collection happened
 * during it; otherwise it is tried again with fewer commands.
 */
import { PerformanceObserver, performance } from 'node:perf_hooks'
import v8 from 'node:v8'

/** Start times of the garbage collections seen (ms, `performance.now()`), the last few. */
const collections: number[] = []
const observer = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) collections.push(entry.startTime)
  if (collections.length > 256) collections.splice(0, collections.length - 256)
})
observer.observe({ entryTypes: ['gc'] })

export interface Allocation {
  /** V8 heap bytes per command. */
  heapBytes: number
  /** ArrayBuffer bytes per command (Buffers outside the heap). */
  arrayBufferBytes: number
}

async function tick (): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 5))
}

/**
 * Runs `commands` commands with `inFlight` callers (`run(loop, n)`) and
 * returns what they allocated each; NaN when every attempt saw a collection.
 */
export async function allocationPerCommand (run: (loop: number, n: number) => Promise<unknown>, inFlight: number, commands: number): Promise<Allocation> {
  for (let attempt = 0, count = commands; attempt < 6 && count >= inFlight; attempt++, count = Math.floor(count / 2)) {
    const perLoop = Math.max(1, Math.floor(count / inFlight))
    await tick()
    const began = performance.now()
    const heap = v8.getHeapStatistics().used_heap_size
    const arrayBuffers = process.memoryUsage().arrayBuffers
    await Promise.all(Array.from({ length: inFlight }, async (_, loop) => {
      for (let n = 0; n < perLoop; n++) await run(loop, n)
    }))
    const heapAfter = v8.getHeapStatistics().used_heap_size
    const arrayBuffersAfter = process.memoryUsage().arrayBuffers
    const ended = performance.now()
    await tick()
    if (collections.some((at) => at >= began && at <= ended)) continue
    const done = perLoop * inFlight
    return { heapBytes: (heapAfter - heap) / done, arrayBufferBytes: (arrayBuffersAfter - arrayBuffers) / done }
  }
  return { heapBytes: NaN, arrayBufferBytes: NaN }
}
