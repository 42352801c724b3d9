/**
 * What bench/client measures: the scenarios, their keys and value, and the
 * measuring loop one client runs for one window. Used by the process that
 * hosts each client (host.ts) and by the parent that orchestrates them.
 */
import { performance } from 'node:perf_hooks'
import type { Timing } from '../lib/config.js'
import { allocationPerCommand } from './allocation.js'
import type { BatchRecorder } from './batches.js'
import type { Driver, Operation } from './drivers.js'
import { rawGet, rawGetMulti, rawSet, type RawRequest } from './raw.js'

/** The id of the raw-socket ceiling among the clients. */
export const CEILING_ID = 'ceiling'
/** The ceiling replaying ours' coalesced batches (measured by the ceiling's host). */
export const BATCHED_CEILING_ID = 'ceiling-batched'
/** The promise floor (promise-floor.ts): the raw socket behind a promise per command. */
export const PROMISE_FLOOR_ID = 'floor-promise'
/** The coalesced floor (coalesced-floor.ts), measured where ours coalesces (`batched` scenarios). */
export const COALESCED_FLOOR_ID = 'floor-coalesced'
/**
 * The contract floor (coalesced-floor.ts): the coalesced floor plus what
 * DESIGN asks of every client, key validation and each VALUE's key checked
 * against the key sent. Measured where ours coalesces, with no replay of its
 * batches: it is compared with ours only.
 */
export const CONTRACT_FLOOR_ID = 'floor-coalesced-contract'
/** The multi-get floor (multi-get-floor.ts), measured on the 100-key gets. */
export const MULTI_GET_FLOOR_ID = 'floor-multi'
/** The ceiling replaying the coalesced floor's batches. */
export const FLOOR_BATCHED_CEILING_ID = 'ceiling-batched-floor'
/**
 * The A/A control: a second copy of ours (coalescing), the same code in a
 * process of its own, measured like any client. Its ratio to ours is what
 * this machine's noise alone does to a paired ratio in that scenario.
 */
export const TWIN_ID = 'ours-twin'
/** Where the twin runs (in full runs): the scenarios whose target lines judge ours. */
const TWIN_SCENARIOS: ReadonlySet<string> = new Set(['get-1', 'get-1-heap', 'get-4', 'get-16', 'get-128', 'get-1024', 'set-1', 'set-128', 'mget-1', 'mget-16'])

export const VALUE_BYTES = 1024
export const KEY_COUNT = 1024
const MULTI_KEYS = 100
/** Hard bound on each measuring loop, on top of the time bound. */
const MAX_OPS_PER_LOOP = 100_000_000
/** A client that fails this often in one window stops early; its sample is marked. */
const MAX_ERRORS = 1000

export interface ClientScenario {
  id: string
  label: string
  op: Operation
  inFlight: number
  /** Keys per command. */
  keys: number
  /** MB of live objects the client's process holds first (an app's heap), in hosts of their own; 0: a bare process. */
  heapMb: number
  /** Only these clients run it; undefined: every client and the ceiling (see {@link runsIn}). */
  clients?: readonly string[]
  /** Ours coalesces these gets: the batched ceiling replays ours' batches next to it, and the coalesced floor runs. */
  batched: boolean
  /** Through a twemproxy in front of the same memcached, in hosts of their own. */
  viaProxy?: boolean
}

/** The app-sized heap of the heap mode, MB. */
export const APP_HEAP_MB = 200
/** Depths where coalescing must not lose to `coalesceGets: false` (with 16, 128 and 1,024 from the main rows). */
const SWEEP_DEPTHS = [2, 4, 8, 32, 64]

const ORDER: readonly Operation[] = ['get', 'set', 'mget']
/** twemproxy speaks memcached's text protocol only: memjs (binary) cannot go through it. */
const PROXY_CLIENTS = [CEILING_ID, 'ours', 'ours-nocoalesce', 'memcached', 'memcache-client']

function get (inFlight: number, extra: Partial<ClientScenario> = {}): ClientScenario {
  return { id: `get-${inFlight}`, label: `get, ${inFlight} in flight`, op: 'get', inFlight, keys: 1, heapMb: 0, batched: inFlight >= 16, ...extra }
}

export const CLIENT_SCENARIOS: readonly ClientScenario[] = [
  get(1),
  get(1, { id: 'get-1-heap', label: `get, 1 in flight, ${APP_HEAP_MB} MB app heap`, heapMb: APP_HEAP_MB, clients: [CEILING_ID, PROMISE_FLOOR_ID, 'ours', 'ours-nocoalesce', 'memjs', TWIN_ID] }),
  ...SWEEP_DEPTHS.map((inFlight) => get(inFlight, { batched: false, clients: ['ours', 'ours-nocoalesce', TWIN_ID] })),
  ...[16, 128, 1024].map((inFlight) => get(inFlight)),
  get(128, { id: 'get-128-twemproxy', label: 'get, 128 in flight, through twemproxy', clients: PROXY_CLIENTS, viaProxy: true }),
  ...[1, 16, 128, 1024].map((inFlight): ClientScenario => ({ id: `set-${inFlight}`, label: `set, ${inFlight} in flight`, op: 'set', inFlight, keys: 1, heapMb: 0, batched: false })),
  { id: 'set-128-twemproxy', label: 'set, 128 in flight, through twemproxy', op: 'set' as const, inFlight: 128, keys: 1, heapMb: 0, batched: false, clients: PROXY_CLIENTS, viaProxy: true },
  ...[1, 16].map((inFlight): ClientScenario => ({ id: `mget-${inFlight}`, label: `100-key get, ${inFlight} in flight`, op: 'mget', inFlight, keys: MULTI_KEYS, heapMb: 0, batched: false }))
].sort((a, b) => ORDER.indexOf(a.op) - ORDER.indexOf(b.op) || a.inFlight - b.inFlight)

/**
 * Whether client `id` runs `scenario`: the scenario's own list, else every
 * client; the coalesced floors only where ours coalesces; the A/A twin only
 * in {@link TWIN_SCENARIOS}. The twin and the contract floor only with
 * `control` (full runs): they add context, not a PASS/MISS line, and the
 * quick run must stay under 3 minutes.
 */
export function runsIn (scenario: ClientScenario, id: string, control: boolean): boolean {
  if ((id === COALESCED_FLOOR_ID || id === CONTRACT_FLOOR_ID) && !scenario.batched) return false
  if ((id === TWIN_ID || id === CONTRACT_FLOOR_ID) && !control) return false
  if (id === TWIN_ID && !TWIN_SCENARIOS.has(scenario.id)) return false
  return scenario.clients?.includes(id) ?? true
}

const pad = (i: number): string => String(i).padStart(4, '0')
export const GET_KEYS = Array.from({ length: KEY_COUNT }, (_, i) => `bench:get:${pad(i)}`)
export const SET_KEYS = Array.from({ length: KEY_COUNT }, (_, i) => `bench:set:${pad(i)}`)
export const MULTI_KEY_LIST = GET_KEYS.slice(0, MULTI_KEYS)

/** 1 KiB of printable ASCII: every client may hand it back as a string. */
export function benchValue (): Buffer {
  const value = Buffer.alloc(VALUE_BYTES)
  for (let i = 0; i < VALUE_BYTES; i++) value[i] = 97 + (i % 26)
  return value
}


/** What the parent asks a client's host process (host.ts), one request at a time. */

export type HostRequest =
  /** Checks the client answers correctly (the ceiling: that each scenario's reply has the expected length). */
  | { type: 'check', scenarios: string[] }
  | { type: 'measure', scenario: string, timing: Timing, /** For the batched ceiling: ours' batch sizes to replay. */ batches?: number[] }

/** What a host answers. */
export type HostReply =
  | { type: 'ready', id: string, label: string, note?: string, ops: Operation[] }
  | { type: 'checked' }
  | { type: 'measured', result: Measured }
  | { type: 'failed', message: string }

/** One client's window. */
export interface Measured {
  opsPerSec: number
  errors: number
  /** CPU time of the client's process per command in the window, microseconds. */
  cpuUs: number
  /** Bytes allocated per command, on V8's heap and in ArrayBuffers (a run after the window; NaN when unknown). */
  heapBytes?: number
  arrayBufferBytes?: number
  /** Ours, coalesced scenarios: keys per multi-key get written in the window, in order. */
  batches?: number[]
  /** The first error of the window, when there was one: what a reader of `errors` wants to know first. */
  firstError?: string
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** Commands of the allocation run after each window, at most; fewer for slow clients (an eighth of the window at their rate, 50 ms at most). */
const ALLOCATION_COMMANDS = 2000
const ALLOCATION_MS = 50

/**
 * `inFlight` concurrent loops, each awaiting one command and issuing the
 * next; then a short run that counts the bytes each command allocates.
 * `recorder`, when given, records the batches written in the window.
 */
export async function measureDriver (run: (loop: number, n: number) => Promise<unknown>, inFlight: number, timing: Timing, recorder?: BatchRecorder): Promise<Measured> {
  let stop = false
  let done = 0
  let errors = 0
  let firstError: string | undefined
  let counting = false
  const loop = async (id: number): Promise<void> => {
    for (let n = 0; !stop && n < MAX_OPS_PER_LOOP; n++) {
      try {
        await run(id, n)
        done++
      } catch (error) {
        if (counting) firstError ??= describe(error)
        if (++errors >= MAX_ERRORS) stop = true
      }
    }
  }
  const loops = Array.from({ length: inFlight }, async (_, id) => await loop(id))
  await sleep(timing.warmupMs)
  const startDone = done
  const startErrors = errors
  recorder?.start()
  counting = true
  const start = performance.now()
  const cpu = process.cpuUsage()
  await sleep(timing.windowMs)
  const counted = done - startDone
  const elapsed = performance.now() - start
  const used = process.cpuUsage(cpu)
  const batches = recorder?.stop()
  const failed = errors - startErrors
  counting = false
  stop = true
  await Promise.all(loops)
  const allocationMs = Math.min(ALLOCATION_MS, timing.windowMs / 8)
  const commands = Math.max(inFlight, Math.min(ALLOCATION_COMMANDS, Math.round(counted * allocationMs / elapsed)))
  const allocation = await allocationPerCommand(run, inFlight, commands)
  return {
    opsPerSec: counted * 1000 / elapsed,
    errors: failed,
    cpuUs: (used.user + used.system) / Math.max(1, counted),
    ...allocation,
    ...(batches === undefined ? {} : { batches }),
    ...(firstError === undefined ? {} : { firstError })
  }
}

function describe (error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' ? `${code}: ${error.message}` : error.message
}

/**
 * The key that loop `loop` of `inFlight` asks for in its `n`-th command:
 * each loop walks the keys in strides of `inFlight` (a power of two), so no
 * two commands in flight ask for the same key, and in the order the loops
 * take turns the keys simply rotate (the ceiling's order, raw.ts). With key
 * `loop + n`, a loop one command ahead of the next asked for the key that
 * loop was asking for: a coalescing client sent it once for both, and the
 * two loops, answered together, stayed paired. At 4 in flight every key
 * then had 2 callers, at 16 1.14 and at 128 1.09, so ours did less work
 * than the ceilings and the uncoalesced clients it was compared with.
 */
export function keyAt (loop: number, n: number, inFlight: number): number {
  return (loop + n * inFlight) % KEY_COUNT
}

export function operation (driver: Driver, scenario: Pick<ClientScenario, 'op' | 'inFlight'>, value: Buffer): (loop: number, n: number) => Promise<unknown> {
  const { inFlight } = scenario
  if (scenario.op === 'get') return (loop, n) => driver.get(GET_KEYS[keyAt(loop, n, inFlight)] as string)
  if (scenario.op === 'set') return (loop, n) => driver.set(SET_KEYS[keyAt(loop, n, inFlight)] as string, value)
  return () => driver.getMulti(MULTI_KEY_LIST)
}

export function rawRequest (scenario: ClientScenario, value: Buffer): RawRequest {
  if (scenario.op === 'get') return rawGet(GET_KEYS, VALUE_BYTES)
  if (scenario.op === 'set') return rawSet(SET_KEYS, value)
  return rawGetMulti(MULTI_KEY_LIST, VALUE_BYTES)
}

/** Checks a driver answers once with the right bytes before anything is timed. */
export async function smokeTest (driver: Driver, value: Buffer): Promise<void> {
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
