/**
 * bench/client: our MemcachedClient against memjs, memcached and
 * memcache-client and against the raw-socket ceiling, on one memcached, with
 * 1 KiB values. Clients run interleaved, round after round (the order rotates
 * each round); the result of each is the median over rounds.
 */
import { performance } from 'node:perf_hooks'
import type { Timing } from '../lib/config.js'
import { RetryBudget, guarded, undisturbed } from '../lib/cpu.js'
import { median, progress, ratio, formatCount } from '../lib/stats.js'
import { MemcachedClient } from '../../src/index.js'
import { createDrivers, type Driver, type Operation } from './drivers.js'
import { RawPipeline, rawGet, rawGetMulti, rawSet, type RawRequest } from './raw.js'

export const VALUE_BYTES = 1024
const KEY_COUNT = 1024
const MULTI_KEYS = 100
/** Hard bound on each measuring loop, on top of the time bound. */
const MAX_OPS_PER_LOOP = 100_000_000
/** A client that fails this often in one window stops early; its sample is marked. */
const MAX_ERRORS = 1000

export const CEILING_ID = 'ceiling'

export interface ClientScenario {
  id: string
  label: string
  op: Operation
  inFlight: number
  /** Keys per command. */
  keys: number
}

export const CLIENT_SCENARIOS: readonly ClientScenario[] = [
  ...[1, 16, 128, 1024].map((inFlight): ClientScenario => ({ id: `get-${inFlight}`, label: `get, ${inFlight} in flight`, op: 'get', inFlight, keys: 1 })),
  ...[1, 16, 128, 1024].map((inFlight): ClientScenario => ({ id: `set-${inFlight}`, label: `set, ${inFlight} in flight`, op: 'set', inFlight, keys: 1 })),
  ...[1, 16].map((inFlight): ClientScenario => ({ id: `mget-${inFlight}`, label: `100-key get, ${inFlight} in flight`, op: 'mget', inFlight, keys: MULTI_KEYS }))
]

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
  /** Median over ours (coalescing). */
  vsOurs: number
  /** Median over the raw-socket ceiling. */
  vsCeiling: number
  /** Ceiling CPU per command over this client's: the ratio a CPU-bound client would reach on an idle machine. */
  cpuVsCeiling: number
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

const pad = (i: number): string => String(i).padStart(4, '0')
const GET_KEYS = Array.from({ length: KEY_COUNT }, (_, i) => `bench:get:${pad(i)}`)
const SET_KEYS = Array.from({ length: KEY_COUNT }, (_, i) => `bench:set:${pad(i)}`)
const MULTI_KEY_LIST = GET_KEYS.slice(0, MULTI_KEYS)

/** 1 KiB of printable ASCII: every client may hand it back as a string. */
export function benchValue (): Buffer {
  const value = Buffer.alloc(VALUE_BYTES)
  for (let i = 0; i < VALUE_BYTES; i++) value[i] = 97 + (i % 26)
  return value
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** `inFlight` concurrent loops, each awaiting one command and issuing the next. */
interface Measured { opsPerSec: number, errors: number, cpuUs: number }

async function measureDriver (run: (loop: number, n: number) => Promise<unknown>, inFlight: number, timing: Timing): Promise<Measured> {
  let stop = false
  let done = 0
  let errors = 0
  const loop = async (id: number): Promise<void> => {
    for (let n = 0; !stop && n < MAX_OPS_PER_LOOP; n++) {
      try {
        await run(id, n)
        done++
      } catch {
        if (++errors >= MAX_ERRORS) stop = true
      }
    }
  }
  const loops = Array.from({ length: inFlight }, async (_, id) => await loop(id))
  await sleep(timing.warmupMs)
  const startDone = done
  const startErrors = errors
  const start = performance.now()
  const cpu = process.cpuUsage()
  await sleep(timing.windowMs)
  const counted = done - startDone
  const elapsed = performance.now() - start
  const used = process.cpuUsage(cpu)
  const failed = errors - startErrors
  stop = true
  await Promise.all(loops)
  return { opsPerSec: counted * 1000 / elapsed, errors: failed, cpuUs: (used.user + used.system) / Math.max(1, counted) }
}

function operation (driver: Driver, scenario: ClientScenario, value: Buffer): (loop: number, n: number) => Promise<unknown> {
  if (scenario.op === 'get') return (loop, n) => driver.get(GET_KEYS[(loop + n) % KEY_COUNT] as string)
  if (scenario.op === 'set') return (loop, n) => driver.set(SET_KEYS[(loop + n) % KEY_COUNT] as string, value)
  return () => driver.getMulti(MULTI_KEY_LIST)
}

function rawRequest (scenario: ClientScenario, value: Buffer): RawRequest {
  if (scenario.op === 'get') return rawGet(GET_KEYS, VALUE_BYTES)
  if (scenario.op === 'set') return rawSet(SET_KEYS, value)
  return rawGetMulti(MULTI_KEY_LIST, VALUE_BYTES)
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

/** Checks each driver answers once with the right bytes before anything is timed. */
async function smokeTest (driver: Driver, value: Buffer): Promise<void> {
  const expected = value.toString('latin1')
  const text = (data: unknown): string => {
    const raw = typeof data === 'object' && data !== null && 'value' in data ? (data as { value: unknown }).value : data
    return Buffer.isBuffer(raw) ? raw.toString('latin1') : String(raw)
  }
  await driver.set(SET_KEYS[0] as string, value)
  const got = text(await driver.get(GET_KEYS[0] as string))
  if (got !== expected) throw new Error(`${driver.label}: get returned ${JSON.stringify(got.slice(0, 40))}…`)
  await driver.getMulti(MULTI_KEY_LIST)
}

export async function runClientSuite (server: { host: string, port: number, address: string }, timing: Timing, only?: ReadonlySet<string>): Promise<ClientSuiteResult> {
  const scenarios = CLIENT_SCENARIOS.filter((scenario) => only?.has(scenario.id) ?? true)
  const value = benchValue()
  progress(`client: preloading ${KEY_COUNT * 2} items of ${VALUE_BYTES} bytes`)
  await preload(server.address, value)
  const every = createDrivers(server.address)
  // Naming clients in `only` narrows the peers too; the ceiling always runs.
  const named = every.filter((driver) => only?.has(driver.id) ?? false)
  const drivers = named.length > 0 ? named : every
  await Promise.all(every.filter((driver) => !drivers.includes(driver)).map(async (driver) => await driver.close()))
  const raw = await RawPipeline.connect(server.host, server.port)
  const samples: ClientSample[] = []
  const budget = new RetryBudget(timing.retries, timing.retryBudgetMs)
  try {
    for (const driver of drivers) await smokeTest(driver, value)
    for (const scenario of scenarios) await raw.verify(rawRequest(scenario, value))
    const total = timing.rounds * scenarios.length
    const estimate = total * (drivers.length + 1) * (timing.warmupMs + timing.windowMs) / 1000
    progress(`client: ${timing.rounds} rounds x ${scenarios.length} scenarios, ${timing.windowMs} ms windows (about ${Math.round(estimate)} s)`)
    for (let round = 1; round <= timing.rounds; round++) {
      for (const scenario of scenarios) {
        const line: string[] = []
        const contenders: Array<Driver | undefined> = [undefined, ...drivers.filter((driver) => driver.ops.has(scenario.op))]
        // Rotate the order each round so no client always runs first or last.
        for (let i = 0; i < contenders.length; i++) {
          const driver = contenders[(i + round - 1) % contenders.length]
          const client = driver?.id ?? CEILING_ID
          const { result, foreignCores, attempts } = await guarded(async () => driver === undefined
            ? { ...await raw.measure(rawRequest(scenario, value), scenario.inFlight, timing.warmupMs, timing.windowMs), errors: 0 }
            : await measureDriver(operation(driver, scenario, value), scenario.inFlight, timing),
          budget, (cores) => progress(`client ${scenario.label} ${client}: other processes used ${cores.toFixed(2)} cores; measuring again`))
          samples.push({ scenario: scenario.id, client, round, ...result, foreignCores, attempts })
          line.push(`${client} ${formatCount(result.opsPerSec)}${result.errors > 0 ? ` (${result.errors} errors)` : ''}`)
        }
        progress(`client round ${round}/${timing.rounds} ${scenario.label}: ${line.join(' | ')}`)
      }
    }
  } finally {
    raw.close()
    await Promise.all(drivers.map(async (driver) => await driver.close()))
  }
  const clients: ClientInfo[] = [
    { id: CEILING_ID, label: 'raw socket (ceiling)', note: 'pre-built pipelined requests, replies counted by length' },
    ...drivers.map(({ id, label, note }) => ({ id, label, ...(note === undefined ? {} : { note }) }))
  ]
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

function summarize (all: readonly ClientSample[], scenarios: readonly ClientScenario[], clients: readonly ClientInfo[]): ClientSummary[] {
  const summary: ClientSummary[] = []
  for (const scenario of scenarios) {
    const of = (client: string): ClientSample[] => undisturbed(all.filter((s) => s.scenario === scenario.id && s.client === client))
    const medianOf = (client: string, pick: (s: ClientSample) => number): number | undefined => {
      const values = of(client).map(pick)
      return values.length === 0 ? undefined : median(values)
    }
    const ours = medianOf('ours', (s) => s.opsPerSec)
    const ceiling = medianOf(CEILING_ID, (s) => s.opsPerSec)
    const ceilingCpu = medianOf(CEILING_ID, (s) => s.cpuUs)
    for (const client of clients) {
      const every = all.filter((s) => s.scenario === scenario.id && s.client === client.id)
      if (every.length === 0) continue
      const mine = undisturbed(every)
      const opsPerSec = median(mine.map((s) => s.opsPerSec))
      const cpuUs = median(mine.map((s) => s.cpuUs))
      summary.push({
        scenario: scenario.id,
        client: client.id,
        opsPerSec,
        samples: every.map((s) => Math.round(s.opsPerSec)),
        disturbed: every.length - mine.length,
        errors: every.reduce((sum, s) => sum + s.errors, 0),
        cpuUs,
        vsOurs: ratio(opsPerSec, ours),
        vsCeiling: ratio(opsPerSec, ceiling),
        cpuVsCeiling: ratio(ceilingCpu, cpuUs)
      })
    }
  }
  return summary
}
