/**
 * Child process: the HTTP load generator (autocannon), pinned away from the
 * app. The parent sends one `LoadJob` at a time over IPC; the answer is one
 * `LoadResult`. Cookies rotate across requests through one counter shared by
 * all connections, so concurrent requests rarely share a session.
 */
import { createHistogram, performance } from 'node:perf_hooks'
import autocannon from 'autocannon'

export interface LoadJob {
  type: 'run'
  id: number
  url: string
  /** `name=value` pairs; one per request, in rotation. Empty: no cookie. */
  cookies: string[]
  connections: number
  warmupMs: number
  windowMs: number
}

export interface LoadResult {
  type: 'result'
  id: number
  reqPerSec: number
  /** Latency of 2xx responses, ms. */
  p50: number
  p99: number
  /** 2xx responses in the window. */
  requests: number
  /** Every response of the job, warmup included (for CPU per request). */
  totalRequests: number
  non2xx: number
  errors: number
  timeouts: number
  error?: string
}

let next = 0

/**
 * One autocannon run of warmup + window: connections are opened once, and
 * only the responses that complete inside the window are counted.
 */
async function run (job: LoadJob): Promise<LoadResult> {
  const cookies = job.cookies
  const setupRequest = cookies.length === 0
    ? undefined
    : (request: autocannon.Request): autocannon.Request => ({ ...request, headers: { ...request.headers, cookie: cookies[next++ % cookies.length] as string } })
  // autocannon's own histogram has 1 ms resolution; this one records microseconds.
  const histogram = createHistogram()
  let ok = 0
  const start = performance.now()
  const windowStart = start + job.warmupMs
  const windowEnd = windowStart + job.windowMs
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon({
      url: job.url,
      connections: job.connections,
      pipelining: 1,
      duration: (job.warmupMs + job.windowMs) / 1000,
      timeout: 5,
      requests: [{ method: 'GET', setupRequest }]
    }, (error: unknown, result: autocannon.Result) => {
      if (error !== null && error !== undefined) reject(error instanceof Error ? error : new Error(String(error)))
      else resolve(result)
    })
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
      if (statusCode < 200 || statusCode >= 300) return
      const now = performance.now()
      if (now < windowStart || now > windowEnd) return
      ok++
      histogram.record(Math.max(1, Math.round(responseTime * 1000)))
    })
  })
  const measured = Math.min(performance.now(), windowEnd) - windowStart
  return {
    type: 'result',
    id: job.id,
    reqPerSec: ok * 1000 / Math.max(1, measured),
    p50: histogram.percentile(50) / 1000,
    p99: histogram.percentile(99) / 1000,
    requests: ok,
    totalRequests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts
  }
}

process.on('message', (message: LoadJob) => {
  if (message.type !== 'run') return
  run(message).then(
    (result) => process.send?.(result),
    (error: unknown) => process.send?.({
      type: 'result', id: message.id, reqPerSec: 0, p50: NaN, p99: NaN, requests: 0, totalRequests: 0, non2xx: 0, errors: 1, timeouts: 0, error: String(error)
    } satisfies LoadResult)
  )
})
process.on('disconnect', () => process.exit(0))
process.send?.({ type: 'ready' })
