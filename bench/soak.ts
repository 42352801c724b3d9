/**
 * Soak test (not part of CI): steady HTTP load over 10,000 sessions against
 * the plugin on real memcached processes, with one memcached killed (-9) and
 * restarted in the middle. Every 10 s it prints RSS, heap, event-loop delay
 * p99 and the error counts; at the end a verdict: memory flat after warm-up
 * (the last third against the stretch between warm-up and the restart) and
 * no answer other than 200 or 503, no request lost or hung.
 *
 *   npm run soak -- --duration 120 [--sessions 10000] [--rps 1500]
 *     [--concurrency 50] [--servers 3] [--replicas 2]
 *
 * The app runs on the main thread, which is what the figures measure; the
 * load generator runs in a worker thread so that it does not pollute the
 * event-loop delay (RSS is the whole process, both threads).
 */
import http from 'node:http'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import Fastify from 'fastify'
import { MemcachedClient, memcachedSession, type MemcachedStore } from '../src/index.js'
import { MemcachedServer } from '../test/helpers/memcached.js'

interface Settings {
  /** Seconds of load. */
  duration: number
  sessions: number
  /** Requests per second the generator aims at. */
  rps: number
  concurrency: number
  servers: number
  replicas: number
}

/** What the load generator reports every second. */
interface LoadReport {
  statuses: Record<string, number>
  /** Socket errors and requests without an answer within HUNG_MS. */
  errors: number
  hung: number
  /** Slowest answer of the second, ms. */
  maxMs: number
}

const SAMPLE_MS = 10_000
// The histogram records the time between two ticks of a timer of this period
// (ms); the delay is what exceeds it.
const DELAY_RESOLUTION_MS = 10
const HUNG_MS = 5000
const MIB = 1024 * 1024
// Memory is flat when the last third stays within these of the reference.
const HEAP_TOLERANCE = { ratio: 0.2, mib: 8 }
const RSS_TOLERANCE = { ratio: 0.2, mib: 32 }
const SECRET = 'soak-test-secret-that-is-long-enough-0001'

function settings (argv: string[]): Settings {
  const value = (name: string, fallback: number): number => {
    const at = argv.indexOf(`--${name}`)
    if (at < 0) return fallback
    const parsed = Number(argv[at + 1])
    if (!Number.isSafeInteger(parsed) || parsed < 1) throw new TypeError(`--${name} must be a positive integer`)
    return parsed
  }
  return {
    duration: value('duration', 300),
    sessions: value('sessions', 10_000),
    rps: value('rps', 1500),
    concurrency: value('concurrency', 50),
    servers: value('servers', 3),
    replicas: value('replicas', 2)
  }
}

// ---- the load generator (worker thread) ----

async function generate (port: number, config: Settings): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: config.concurrency })
  const cookies: Array<string | undefined> = new Array(config.sessions)
  let report: LoadReport = { statuses: {}, errors: 0, hung: 0, maxMs: 0 }
  let stopping = false
  parentPort?.on('message', (message) => { if (message === 'stop') stopping = true })
  const flush = setInterval(() => {
    parentPort?.postMessage(report)
    report = { statuses: {}, errors: 0, hung: 0, maxMs: 0 }
  }, 1000)

  function send (method: string, path: string, cookie: string | undefined): Promise<{ status: number, setCookie: string | undefined }> {
    return new Promise((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = { 'content-length': '0' }
      if (cookie !== undefined) headers.cookie = `sid=${cookie}`
      const request = http.request({ host: '127.0.0.1', port, path, method, agent, headers, timeout: HUNG_MS }, (response) => {
        response.resume()
        response.on('end', () => resolve({ status: response.statusCode ?? 0, setCookie: response.headers['set-cookie']?.find((line) => line.startsWith('sid=')) }))
      })
      request.on('timeout', () => { request.destroy(new Error('hung')) })
      request.on('error', reject)
      request.end()
    })
  }

  // 69% reads (a touch), 30% increments (a cas), 1% logouts (tombstones),
  // after which the slot starts a new session (an add).
  async function one (slot: number): Promise<void> {
    const cookie = cookies[slot]
    const dice = Math.random()
    const [method, path] = cookie === undefined || (dice >= 0.69 && dice < 0.99) ? ['POST', '/count'] : dice < 0.69 ? ['GET', '/peek'] : ['POST', '/logout']
    const started = performance.now()
    try {
      const response = await send(method, path, cookie)
      report.statuses[response.status] = (report.statuses[response.status] ?? 0) + 1
      const value = /^sid=([^;]*)/.exec(response.setCookie ?? '')?.[1]
      if (value !== undefined) cookies[slot] = value === '' ? undefined : value
    } catch (error) {
      if ((error as Error).message === 'hung') report.hung++
      else report.errors++
    }
    report.maxMs = Math.max(report.maxMs, performance.now() - started)
  }

  const interval = config.concurrency / config.rps * 1000
  await Promise.all(Array.from({ length: config.concurrency }, async (_, worker) => {
    let next = performance.now() + worker * interval / config.concurrency
    while (!stopping) {
      const wait = next - performance.now()
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      next += interval
      await one(Math.floor(Math.random() * config.sessions))
    }
  }))
  clearInterval(flush)
  parentPort?.postMessage(report)
  agent.destroy()
  parentPort?.postMessage('done')
}

// ---- the app and the measurements (main thread) ----

interface Sample { at: number, rss: number, heap: number }

function collect (): void {
  (globalThis as { gc?: () => void }).gc?.()
}

function average (samples: Sample[], field: 'rss' | 'heap'): number {
  return samples.reduce((sum, sample) => sum + sample[field], 0) / Math.max(1, samples.length)
}

function flat (name: string, reference: number, final: number, tolerance: { ratio: number, mib: number }): boolean {
  const allowed = Math.max(reference * tolerance.ratio, tolerance.mib * MIB)
  const ok = final - reference <= allowed
  console.log(`  ${name}: ${(reference / MIB).toFixed(1)} MiB after warm-up, ${(final / MIB).toFixed(1)} MiB in the last third ` +
    `(${final >= reference ? '+' : ''}${((final - reference) / MIB).toFixed(1)} MiB, allowed +${(allowed / MIB).toFixed(1)}): ${ok ? 'flat' : 'GROWING'}`)
  return ok
}

async function main (): Promise<void> {
  const config = settings(process.argv.slice(2))
  if (config.replicas > config.servers) throw new TypeError('--replicas cannot exceed --servers')
  console.log(`soak: ${config.duration} s, ${config.sessions} sessions, ${config.rps} req/s aimed, ${config.concurrency} concurrent, ` +
    `${config.servers} memcached, replicas ${config.replicas}; gc ${typeof (globalThis as { gc?: unknown }).gc === 'function' ? 'forced before each sample' : 'not exposed (run with --expose-gc)'}`)
  const servers = await Promise.all(Array.from({ length: config.servers }, async () => await MemcachedServer.start()))
  const client = new MemcachedClient({ servers: servers.map((server) => server.address), timeout: 500, connectTimeout: 500, retryDelay: 1000 })
  const app = Fastify()
  await app.register(memcachedSession, { secret: SECRET, client, replicas: config.replicas })
  app.get('/peek', async (request) => ({ views: request.session.get('views' as never) ?? 0 }))
  app.post('/count', async (request) => {
    const views = (request.session.get('views' as never) as number | undefined ?? 0) + 1
    request.session.set('views' as never, views as never)
    return { views }
  })
  app.post('/logout', async (request) => {
    await request.session.destroy()
    return { ok: true }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const store = app.sessionStore as MemcachedStore

  const delay = monitorEventLoopDelay({ resolution: DELAY_RESOLUTION_MS })
  delay.enable()
  const worker = new Worker(__filename, { workerData: { port, config } })
  const totals: LoadReport = { statuses: {}, errors: 0, hung: 0, maxMs: 0 }
  let interval: LoadReport = { statuses: {}, errors: 0, hung: 0, maxMs: 0 }
  const finished = new Promise<void>((resolve, reject) => {
    worker.on('error', reject)
    worker.on('message', (message: LoadReport | 'done') => {
      if (message === 'done') return resolve()
      for (const target of [totals, interval]) {
        for (const [status, count] of Object.entries(message.statuses)) target.statuses[status] = (target.statuses[status] ?? 0) + count
        target.errors += message.errors
        target.hung += message.hung
        target.maxMs = Math.max(target.maxMs, message.maxMs)
      }
    })
  })

  const started = performance.now()
  const samples: Sample[] = []
  const victim = servers[0] as MemcachedServer
  console.log('   t s   req/s     200    503  other  err hung  max ms   rss MiB  heap MiB  eld p99 ms  repaired buried failed')
  const sampler = setInterval(() => {
    collect()
    const memory = process.memoryUsage()
    const at = (performance.now() - started) / 1000
    samples.push({ at, rss: memory.rss, heap: memory.heapUsed })
    const ok = interval.statuses['200'] ?? 0
    const unavailable = interval.statuses['503'] ?? 0
    const all = Object.values(interval.statuses).reduce((sum, count) => sum + count, 0)
    const counters = store.counters
    console.log(`${at.toFixed(0).padStart(6)} ${(all / (SAMPLE_MS / 1000)).toFixed(0).padStart(7)} ${String(ok).padStart(7)} ${String(unavailable).padStart(6)} ` +
      `${String(all - ok - unavailable).padStart(6)} ${String(interval.errors).padStart(4)} ${String(interval.hung).padStart(4)} ${interval.maxMs.toFixed(0).padStart(7)} ` +
      `${(memory.rss / MIB).toFixed(1).padStart(9)} ${(memory.heapUsed / MIB).toFixed(1).padStart(9)} ${Math.max(0, delay.percentile(99) / 1e6 - DELAY_RESOLUTION_MS).toFixed(1).padStart(11)} ` +
      `${String(counters.repaired).padStart(9)} ${String(counters.buried).padStart(6)} ${String(counters.failed).padStart(6)}`)
    delay.reset()
    interval = { statuses: {}, errors: 0, hung: 0, maxMs: 0 }
  }, SAMPLE_MS)

  await new Promise((resolve) => setTimeout(resolve, config.duration * 500))
  const restartAt = (performance.now() - started) / 1000
  console.log(`  -- ${restartAt.toFixed(0)} s: kill -9 of memcached ${victim.address}, restarted at once (empty)`)
  await victim.kill()
  await victim.restart()
  await new Promise((resolve) => setTimeout(resolve, config.duration * 500))
  worker.postMessage('stop')
  await finished
  clearInterval(sampler)
  delay.disable()
  await app.close()
  await client.close()
  await Promise.all(servers.map(async (server) => await server.stop()))

  const warmUp = Math.max(20, config.duration * 0.2)
  const reference = samples.filter((sample) => sample.at > warmUp && sample.at <= restartAt)
  const last = samples.filter((sample) => sample.at > config.duration * 2 / 3)
  const all = Object.values(totals.statuses).reduce((sum, count) => sum + count, 0)
  const unexpected = all - (totals.statuses['200'] ?? 0) - (totals.statuses['503'] ?? 0)
  console.log(`totals: ${all} requests, ${JSON.stringify(totals.statuses)}, ${totals.errors} socket errors, ${totals.hung} hung, slowest ${totals.maxMs.toFixed(0)} ms; ` +
    `store ${JSON.stringify(store.counters)}`)
  if (reference.length === 0 || last.length === 0) {
    console.log(`verdict: FAIL (too short to judge: ${reference.length} samples after warm-up, ${last.length} in the last third; use --duration 120 or more)`)
    process.exitCode = 1
    return
  }
  const heapOk = flat('heap', average(reference, 'heap'), average(last, 'heap'), HEAP_TOLERANCE)
  const rssOk = flat('rss', average(reference, 'rss'), average(last, 'rss'), RSS_TOLERANCE)
  const answersOk = unexpected === 0 && totals.errors === 0 && totals.hung === 0
  console.log(`  answers: ${answersOk ? 'only 200 and 503, none lost or hung' : `${unexpected} unexpected statuses, ${totals.errors} errors, ${totals.hung} hung`}`)
  const pass = heapOk && rssOk && answersOk
  console.log(`verdict: ${pass ? 'PASS' : 'FAIL'}`)
  if (!pass) process.exitCode = 1
}

if (isMainThread) {
  main().catch((error: unknown) => {
    console.error(error)
    process.exitCode = 1
  })
} else {
  const data = workerData as { port: number, config: Settings }
  void generate(data.port, data.config)
}
