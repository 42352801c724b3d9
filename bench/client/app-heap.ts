/**
 * An app's heap: live objects a Fastify app with caches holds (strings,
 * arrays, small objects), allocated once and kept, so a client is measured
 * with the garbage collector's work of a real process rather than a tiny one.
 */
import v8 from 'node:v8'

/** Kept alive for the life of the process. */
const retained: unknown[] = []

/** Allocates and keeps about `megabytes` MB of mixed live objects. */
export function holdAppHeap (megabytes: number): void {
  const target = v8.getHeapStatistics().used_heap_size + megabytes * 1024 * 1024
  for (let i = 0; v8.getHeapStatistics().used_heap_size < target; i++) {
    const chunk: unknown[] = []
    for (let j = 0; j < 10_000; j++) {
      const id = i * 10_000 + j
      chunk.push({ id, name: `user-${id}-${'x'.repeat(16 + (id % 32))}`, tags: [id % 7, id % 11, `t${id % 13}`], active: id % 2 === 0 })
    }
    retained.push(chunk)
  }
}
