/**
 * bench/http: the same Fastify app behind each session implementation, each
 * in its own process on the measured core, driven by autocannon from another
 * process on the load core, over existing sessions whose cookies rotate.
 * Variants run interleaved, round after round; results are medians.
 */
import { performance } from 'node:perf_hooks'
import type { BenchConfig } from '../lib/config.js'
import { RetryBudget, guarded, processCpuSeconds, undisturbed } from '../lib/cpu.js'
import type { Pinning } from '../lib/machine.js'
import { stopChild } from '../lib/processes.js'
import { formatCount, formatMs, median, pairedRatio, progress } from '../lib/stats.js'
import { LoadGenerator, createSessions, startServer, type RunningServer } from './children.js'
import { FULL_RUN_VARIANTS, VARIANTS, type Backends, type Variant, type VariantId } from './variants.js'

export type Route = 'rw' | 'ro'

export const ROUTES: ReadonlyArray<{ id: Route, label: string }> = [
  { id: 'rw', label: 'read-write (read and increment a counter)' },
  { id: 'ro', label: 'read-only (read the counter)' }
]

export interface HttpSample {
  variant: VariantId
  route: Route
  /** Concurrent connections of the load generator. */
  connections: number
  round: number
  reqPerSec: number
  p50: number
  p99: number
  /** Non-2xx responses, socket errors and timeouts. */
  errors: number
  /** CPU time of the app process per request, microseconds (warmup and window). */
  serverCpuUs: number
  /** Share of a core the load generator used (near 1: the load, not the app, may be the limit). */
  loadBusy: number
  /** CPU used by processes the bench did not start during the window, cores. */
  foreignCores: number
  attempts: number
}

export interface HttpSummary {
  variant: VariantId
  route: Route
  connections: number
  reqPerSec: number
  p50: number
  p99: number
  /** Median app CPU per request, microseconds. */
  serverCpuUs: number
  /** Median share of a core used by the load generator. */
  loadBusy: number
  samples: number[]
  /** Windows left out of the medians: disturbed by other processes (see `undisturbed`). */
  disturbed: number
  errors: number
  /** Over ours + MemoryStore, same route: the median of the ratios round by round (`pairedRatio`), as every ratio here. */
  vsOursMemory: number
  /** Over no session, same route. */
  vsCeiling: number
  /** The same ratios from app CPU per request: what req/s would show on an otherwise idle machine with a CPU-bound app. */
  cpuVsOursMemory: number
  cpuVsCeiling: number
}

export interface HttpSuiteResult {
  timing: BenchConfig['http']
  variants: Array<Variant & { skipped?: string }>
  routes: typeof ROUTES
  samples: HttpSample[]
  summary: HttpSummary[]
  /** Windows measured again because other processes used the CPU. */
  retried: number
  /** Median foreign CPU over the kept windows, cores. */
  medianForeignCores: number
}

export async function runHttpSuite (config: BenchConfig, backends: Backends, pinning: Pinning): Promise<HttpSuiteResult> {
  const timing = config.http
  const variants: Array<Variant & { skipped?: string }> = VARIANTS.filter((variant) => (config.only?.has(variant.id) ?? true) && (timing.control || !FULL_RUN_VARIANTS.has(variant.id))).map((variant) =>
    variant.needs === 'redis' && backends.redis === undefined ? { ...variant, skipped: 'skipped: redis-server not found' } : { ...variant })
  for (const variant of variants) if (variant.skipped !== undefined) progress(`http: ${variant.label}: ${variant.skipped}`)
  const servers: RunningServer[] = []
  let load: LoadGenerator | undefined
  const samples: HttpSample[] = []
  const budget = new RetryBudget(timing.retries, timing.retryBudgetMs)
  try {
    for (const variant of variants) {
      if (variant.skipped !== undefined) continue
      const server = await startServer(variant, backends, pinning.measured)
      servers.push(server)
      server.cookies = await createSessions(server, timing.sessions)
      progress(`http: ${variant.label} on port ${server.port}, ${server.cookies.length} sessions`)
    }
    load = await LoadGenerator.start(pinning.load)
    const perRun = (timing.warmupMs + timing.windowMs) / 1000 + 0.05
    const runs = timing.rounds * timing.connections.length * ROUTES.length * servers.length
    progress(`http: ${timing.rounds} rounds x ${timing.connections.join(' and ')} connections x ${ROUTES.length} routes x ${servers.length} variants, ${timing.windowMs} ms windows (about ${Math.round(runs * perRun)} s)`)
    for (let round = 1; round <= timing.rounds; round++) {
      for (const connections of timing.connections) for (const route of ROUTES) {
        const line: string[] = []
        for (let i = 0; i < servers.length; i++) {
          const server = servers[(i + round - 1) % servers.length] as RunningServer
          const generator = load
          const { result: { result, serverCpuUs, loadBusy }, foreignCores, attempts } = await guarded(async () => {
            const serverBefore = processCpuSeconds(server.child.pid)
            const loadBefore = processCpuSeconds(generator.pid)
            const started = performance.now()
            const result = await generator.run({
              url: `http://127.0.0.1:${server.port}/${route.id}`,
              cookies: server.cookies,
              connections,
              warmupMs: timing.warmupMs,
              windowMs: timing.windowMs
            })
            const seconds = (performance.now() - started) / 1000
            return {
              result,
              serverCpuUs: (processCpuSeconds(server.child.pid) - serverBefore) * 1e6 / Math.max(1, result.totalRequests),
              loadBusy: (processCpuSeconds(generator.pid) - loadBefore) / seconds
            }
          }, budget, (cores) => progress(`http /${route.id} ${connections} connections ${server.variant.id}: other processes used ${cores.toFixed(2)} cores; measuring again`))
          const errors = result.non2xx + result.errors + result.timeouts
          if (result.error !== undefined) progress(`http: ${server.variant.label}: ${result.error}`)
          samples.push({ variant: server.variant.id, route: route.id, connections, round, reqPerSec: result.reqPerSec, p50: result.p50, p99: result.p99, errors, serverCpuUs, loadBusy, foreignCores, attempts })
          line.push(`${server.variant.id} ${formatCount(result.reqPerSec)}/s p99 ${formatMs(result.p99)}ms${errors > 0 ? ` (${errors} errors)` : ''}`)
        }
        progress(`http round ${round}/${timing.rounds} /${route.id} ${connections} connections: ${line.join(' | ')}`)
      }
    }
  } finally {
    await load?.stop()
    await Promise.all(servers.map(async (server) => await stopChild(server.child)))
  }
  const foreign = samples.map((s) => s.foreignCores).filter(Number.isFinite)
  return {
    timing,
    variants,
    routes: ROUTES,
    samples,
    summary: summarize(samples, variants, timing.connections),
    retried: budget.used,
    medianForeignCores: median(foreign)
  }
}

export function summarize (all: readonly HttpSample[], variants: ReadonlyArray<Variant & { skipped?: string }>, counts: readonly number[]): HttpSummary[] {
  const summary: HttpSummary[] = []
  for (const connections of counts) for (const route of ROUTES) {
    const every = (variant: VariantId): HttpSample[] => all.filter((s) => s.route === route.id && s.connections === connections && s.variant === variant)
    const rate = (s: HttpSample): number => s.reqPerSec
    const cpu = (s: HttpSample): number => s.serverCpuUs
    const oursMemory = undisturbed(every('ours-memory'))
    const ceiling = undisturbed(every('none'))
    for (const variant of variants) {
      const samples = every(variant.id)
      if (samples.length === 0) continue
      const mine = undisturbed(samples)
      const reqPerSec = median(mine.map((s) => s.reqPerSec))
      const serverCpuUs = median(mine.map((s) => s.serverCpuUs))
      summary.push({
        variant: variant.id,
        route: route.id,
        connections,
        reqPerSec,
        p50: median(mine.map((s) => s.p50)),
        p99: median(mine.map((s) => s.p99)),
        serverCpuUs,
        loadBusy: median(mine.map((s) => s.loadBusy)),
        samples: samples.map((s) => Math.round(s.reqPerSec)),
        disturbed: samples.length - mine.length,
        errors: samples.reduce((sum, s) => sum + s.errors, 0),
        vsOursMemory: pairedRatio(mine, oursMemory, rate),
        vsCeiling: pairedRatio(mine, ceiling, rate),
        cpuVsOursMemory: pairedRatio(oursMemory, mine, cpu),
        cpuVsCeiling: pairedRatio(ceiling, mine, cpu)
      })
    }
  }
  return summary
}
