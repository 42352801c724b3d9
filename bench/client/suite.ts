/**
 * bench/client: our MemcachedClient against memjs, memcached and
 * memcache-client and against the raw-socket ceiling, on one memcached, with
 * 1 KiB values. Each client runs in a process of its own; they take turns,
 * round after round (the order rotates each round); the result of each is
 * the median over rounds.
 */
import type { Timing } from '../lib/config.js'
import { RetryBudget, guarded, undisturbed } from '../lib/cpu.js'
import { median, pairedRatio, progress, formatCount } from '../lib/stats.js'
import { MemcachedClient } from '../../src/index.js'
import { DRIVER_IDS } from './drivers.js'
import { ClientHost } from './hosts.js'
import { BATCHED_CEILING_ID, CEILING_ID, CLIENT_SCENARIOS, COALESCED_FLOOR_ID, CONTRACT_FLOOR_ID, FLOOR_BATCHED_CEILING_ID, MULTI_GET_FLOOR_ID, PROMISE_FLOOR_ID, TWIN_ID, GET_KEYS, KEY_COUNT, SET_KEYS, VALUE_BYTES, benchValue, runsIn, type ClientScenario, type Measured } from './workload.js'

export interface ClientInfo {
  id: string
  label: string
  note?: string
}

export interface ClientSample {
  scenario: string
  client: string
  round: number
  opsPerSec: number
  errors: number
  /** CPU time of the measured (client) process per command in the window, microseconds. */
  cpuUs: number
  /** Bytes allocated per command (a run after the window), V8 heap and ArrayBuffers. */
  heapBytes?: number
  arrayBufferBytes?: number
  /** Ours, coalesced scenarios: mean keys per multi-key get written in the window. */
  meanBatch?: number
  /** CPU used by processes the bench did not start during the window, cores. */
  foreignCores: number
  attempts: number
}

export interface ClientSummary {
  scenario: string
  client: string
  /** Median commands per second (a 100-key get counts once). */
  opsPerSec: number
  samples: number[]
  /** Windows left out of the medians: disturbed by other processes (see `undisturbed`). */
  disturbed: number
  errors: number
  /** Median CPU of the client process per command, microseconds. */
  cpuUs: number
  /** Over ours (coalescing): the median of the ratios round by round (`pairedRatio`), as every ratio here. */
  vsOurs: number
  /** Over the raw-socket ceiling. */
  vsCeiling: number
  /** Ceiling CPU per command over this client's: the ratio a CPU-bound client would reach on an idle machine. */
  cpuVsCeiling: number
  /** Over the batched ceiling (ours' coalesced batches replayed; the coalesced floor's own for the floor); NaN where there is none. */
  vsBatched: number
  cpuVsBatched: number
  /** Median bytes allocated per command, V8 heap plus ArrayBuffers (NaN when unknown). */
  allocatedBytes: number
  /** Of which in ArrayBuffers. */
  arrayBufferBytes: number
  /** Ours, coalesced scenarios: median over windows of the mean keys per multi-key get. */
  meanBatch?: number
}

export interface ClientSuiteResult {
  valueBytes: number
  timing: Timing
  scenarios: readonly ClientScenario[]
  clients: ClientInfo[]
  samples: ClientSample[]
  summary: ClientSummary[]
  /** Windows measured again because other processes used the CPU. */
  retried: number
  /** Median foreign CPU over the kept windows, cores. */
  medianForeignCores: number
}

/** Stores the items every get reads, with flags 0, through our client. */
async function preload (server: string, value: Buffer): Promise<void> {
  const client = new MemcachedClient({ servers: [server], timeout: 5000 })
  try {
    await client.flush()
    await Promise.all([...GET_KEYS, ...SET_KEYS].map(async (key) => await client.set(key, value)))
    const found = await client.getMulti(GET_KEYS)
    if (found.size !== KEY_COUNT) throw new Error(`preload: ${found.size} of ${KEY_COUNT} keys readable`)
  } finally {
    await client.close()
  }
}

/** The hosts of one kind of process: bare, or holding an app's heap. */
async function startHosts (ids: readonly string[], server: { host: string, port: number }, core: number | undefined, heapMb: number): Promise<ClientHost[]> {
  const hosts = await Promise.allSettled(ids.map(async (id) => await ClientHost.start(id, server.host, server.port, core, heapMb)))
  const started = hosts.flatMap((host) => host.status === 'fulfilled' ? [host.value] : [])
  const failed = hosts.find((host): host is PromiseRejectedResult => host.status === 'rejected')
  if (failed !== undefined) {
    await Promise.all(started.map(async (host) => await host.stop()))
    throw failed.reason
  }
  return started
}

/**
 * Runs every scenario for the ceiling and each client, each in a process of
 * its own (host.ts) pinned to `core`, one window at a time. Right after ours
 * in a coalesced scenario, the ceiling's host replays ours' batches (the
 * batched ceiling).
 */
export async function runClientSuite (server: { host: string, port: number, address: string }, timing: Timing, only: ReadonlySet<string> | undefined, core: number | undefined,
  proxy?: { host: string, port: number }): Promise<ClientSuiteResult> {
  const scenarios = CLIENT_SCENARIOS.filter((scenario) => only?.has(scenario.id) ?? true)
  progress(`client: preloading ${KEY_COUNT * 2} items of ${VALUE_BYTES} bytes`)
  await preload(server.address, benchValue())
  // Naming clients in `only` narrows the peers (and the floors) too; the ceiling always runs.
  const everyId = [
    PROMISE_FLOOR_ID,
    ...(scenarios.some((scenario) => scenario.batched) ? [COALESCED_FLOOR_ID, CONTRACT_FLOOR_ID] : []),
    ...(scenarios.some((scenario) => scenario.op === 'mget') ? [MULTI_GET_FLOOR_ID] : []),
    ...DRIVER_IDS
  ]
  const named = everyId.filter((id) => only?.has(id) ?? false)
  const ids = [CEILING_ID, ...(named.length > 0 ? named : everyId)]
  const heapMb = Math.max(0, ...scenarios.map((scenario) => scenario.heapMb))
  const idsOf = (special: (scenario: ClientScenario) => boolean): string[] => ids.filter((id) => scenarios.some((scenario) => special(scenario) && runsIn(scenario, id, timing.control)))
  // Every client named has a bare host (the tables' labels come from them); the full-run-only ones when they run.
  const running = new Set(idsOf(() => true))
  const bareIds = ids.filter((id) => (id !== TWIN_ID && id !== CONTRACT_FLOOR_ID) || running.has(id))
  const heapIds = idsOf((scenario) => scenario.heapMb > 0)
  const proxyIds = proxy === undefined ? [] : idsOf((scenario) => scenario.viaProxy === true)
  const hosts: ClientHost[] = []
  const heapHosts: ClientHost[] = []
  const proxyHosts: ClientHost[] = []
  const samples: ClientSample[] = []
  const budget = new RetryBudget(timing.retries, timing.retryBudgetMs)
  const windowMs = timing.warmupMs + timing.windowMs
  try {
    hosts.push(...await startHosts(bareIds, server, core, 0))
    progress(`client: each client in its own process (pids ${hosts.map((host) => `${host.id} ${host.pid ?? '?'}`).join(', ')})`)
    if (heapMb > 0 && heapIds.length > 0) {
      heapHosts.push(...await startHosts(heapIds, server, core, heapMb))
      progress(`client: ${heapMb} MB app heap in ${heapIds.join(', ')} (pids ${heapHosts.map((host) => host.pid ?? '?').join(', ')})`)
    }
    if (proxy !== undefined && proxyIds.length > 0) {
      proxyHosts.push(...await startHosts(proxyIds, proxy, core, 0))
      progress(`client: through twemproxy on ${proxy.host}:${proxy.port}: ${proxyIds.join(', ')} (pids ${proxyHosts.map((host) => host.pid ?? '?').join(', ')})`)
    }
    for (const host of [...hosts, ...heapHosts, ...proxyHosts]) await host.ask({ type: 'check', scenarios: scenarios.map((scenario) => scenario.id) }, windowMs)
    const poolOf = (scenario: ClientScenario): ClientHost[] => scenario.viaProxy === true ? proxyHosts : scenario.heapMb > 0 ? heapHosts : hosts
    const contendersOf = (scenario: ClientScenario): ClientHost[] => poolOf(scenario).filter((host) => host.ops.has(scenario.op) && runsIn(scenario, host.id, timing.control))
    const windowsOf = (scenario: ClientScenario): number => contendersOf(scenario).reduce((sum, host) => sum + (BATCHED_CEILING_OF[host.id] !== undefined && scenario.batched ? 2 : 1), 0)
    const windows = scenarios.reduce((sum, scenario) => sum + windowsOf(scenario), 0)
    progress(`client: ${timing.rounds} rounds x ${scenarios.length} scenarios, ${timing.windowMs} ms windows (about ${Math.round(timing.rounds * windows * windowMs / 1000)} s)`)
    for (let round = 1; round <= timing.rounds; round++) {
      for (const scenario of scenarios) {
        const line: string[] = []
        const contenders = contendersOf(scenario)
        const ceiling = poolOf(scenario).find((host) => host.id === CEILING_ID)
        const measure = async (host: ClientHost, client: string, batches?: number[]): Promise<Measured> => {
          const { result, foreignCores, attempts } = await guarded(async () => {
            const reply = await host.ask({ type: 'measure', scenario: scenario.id, timing, ...(batches === undefined ? {} : { batches }) }, windowMs)
            if (reply.type !== 'measured') throw new Error(`${host.label}: unexpected ${reply.type}`)
            return reply.result
          }, budget, (cores) => progress(`client ${scenario.label} ${client}: other processes used ${cores.toFixed(2)} cores; measuring again`))
          const { batches: written, firstError, ...measured } = result
          if (firstError !== undefined) progress(`client ${scenario.label} ${client}: ${result.errors} errors in the window, the first: ${firstError}`)
          samples.push({ scenario: scenario.id, client, round, ...measured, ...(written === undefined ? {} : { meanBatch: mean(written) }), foreignCores, attempts })
          line.push(`${client} ${formatCount(result.opsPerSec)}${result.errors > 0 ? ` (${result.errors} errors)` : ''}`)
          return result
        }
        // Rotate the order each round so no client always runs first or last.
        for (let i = 0; i < contenders.length; i++) {
          const host = contenders[(i + round - 1) % contenders.length] as ClientHost
          const result = await measure(host, host.id)
          const replay = BATCHED_CEILING_OF[host.id]
          if (replay !== undefined && ceiling !== undefined && result.batches !== undefined && result.batches.length > 0) {
            await measure(ceiling, replay, result.batches)
          }
        }
        progress(`client round ${round}/${timing.rounds} ${scenario.label}: ${line.join(' | ')}`)
      }
    }
  } finally {
    await Promise.all([...hosts, ...heapHosts, ...proxyHosts].map(async (host) => await host.stop()))
  }
  const clients: ClientInfo[] = hosts.map(({ id, label, note }) => ({ id, label, ...(note === undefined ? {} : { note }) }))
  if (samples.some((s) => s.client === FLOOR_BATCHED_CEILING_ID)) {
    clients.splice(1, 0, { id: FLOOR_BATCHED_CEILING_ID, label: 'raw socket, the coalesced floor\'s batches (ceiling)', note: 'the multi-key gets the coalesced floor wrote in its window, replayed as ours\' are' })
  }
  if (samples.some((s) => s.client === BATCHED_CEILING_ID)) {
    clients.splice(1, 0, { id: BATCHED_CEILING_ID, label: 'raw socket, ours\' batches (ceiling)', note: 'the multi-key gets ours (coalescing) wrote in its window, pre-built and replayed over one socket with as many keys in flight' })
  }
  const foreign = samples.map((s) => s.foreignCores).filter(Number.isFinite)
  return {
    valueBytes: VALUE_BYTES,
    timing,
    scenarios,
    clients,
    samples,
    summary: summarize(samples, scenarios, clients),
    retried: budget.used,
    medianForeignCores: median(foreign)
  }
}

/** The clients whose coalesced batches the ceiling replays right after them, and the id of that replay. */
const BATCHED_CEILING_OF: Readonly<Record<string, string>> = { ours: BATCHED_CEILING_ID, [COALESCED_FLOOR_ID]: FLOOR_BATCHED_CEILING_ID }

function mean (values: readonly number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length)
}

export function summarize (all: readonly ClientSample[], scenarios: readonly ClientScenario[], clients: readonly ClientInfo[]): ClientSummary[] {
  const summary: ClientSummary[] = []
  for (const scenario of scenarios) {
    const of = (client: string): ClientSample[] => undisturbed(all.filter((s) => s.scenario === scenario.id && s.client === client))
    const rate = (s: ClientSample): number => s.opsPerSec
    const cpu = (s: ClientSample): number => s.cpuUs
    for (const client of clients) {
      const every = all.filter((s) => s.scenario === scenario.id && s.client === client.id)
      if (every.length === 0) continue
      const mine = undisturbed(every)
      const opsPerSec = median(mine.map((s) => s.opsPerSec))
      const cpuUs = median(mine.map((s) => s.cpuUs))
      const batches = mine.flatMap((s) => s.meanBatch === undefined ? [] : [s.meanBatch])
      const batched = of(BATCHED_CEILING_OF[client.id] ?? BATCHED_CEILING_ID)
      summary.push({
        scenario: scenario.id,
        client: client.id,
        opsPerSec,
        samples: every.map((s) => Math.round(s.opsPerSec)),
        disturbed: every.length - mine.length,
        errors: every.reduce((sum, s) => sum + s.errors, 0),
        cpuUs,
        allocatedBytes: median(mine.map((s) => (s.heapBytes ?? NaN) + (s.arrayBufferBytes ?? NaN))),
        arrayBufferBytes: median(mine.map((s) => s.arrayBufferBytes ?? NaN)),
        ...(batches.length === 0 ? {} : { meanBatch: median(batches) }),
        vsOurs: pairedRatio(mine, of('ours'), rate),
        vsCeiling: pairedRatio(mine, of(CEILING_ID), rate),
        cpuVsCeiling: pairedRatio(of(CEILING_ID), mine, cpu),
        vsBatched: pairedRatio(mine, batched, rate),
        cpuVsBatched: pairedRatio(batched, mine, cpu)
      })
    }
  }
  return summary
}
