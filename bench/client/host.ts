/**
 * One client under test (or the raw-socket ceiling) in a process of its own.
 * The bench's parent asks it for one window at a time over IPC. Each client
 * thus has its own heap, compiled code and event loop, and its CPU time per
 * command is its own: none pays for another's garbage, timers or
 * megamorphic call sites.
 *
 *   node build/bench/client/host.js <client id | ceiling> <host> <port> [heap MB]
 *
 * With a heap size, the process first allocates and keeps that much of an
 * app's live objects (app-heap.ts): the heap mode.
 */
import type { Timing } from '../lib/config.js'
import { holdAppHeap } from './app-heap.js'
import { BatchRecorder } from './batches.js'
import { createDriver, type Driver } from './drivers.js'
import { CoalescedFloor } from './coalesced-floor.js'
import { MultiGetFloor } from './multi-get-floor.js'
import { PromiseFloor, floorGet, floorSet } from './promise-floor.js'
import { RawPipeline } from './raw.js'
import { CEILING_ID, CLIENT_SCENARIOS, COALESCED_FLOOR_ID, CONTRACT_FLOOR_ID, GET_KEYS, MULTI_GET_FLOOR_ID, MULTI_KEY_LIST, PROMISE_FLOOR_ID, SET_KEYS, VALUE_BYTES, benchValue, keyAt, measureDriver, operation, rawRequest, smokeTest, type ClientScenario, type HostReply, type HostRequest, type Measured } from './workload.js'

const value = benchValue()

function scenarioOf (id: string): ClientScenario {
  const scenario = CLIENT_SCENARIOS.find((candidate) => candidate.id === id)
  if (scenario === undefined) throw new Error(`unknown scenario ${JSON.stringify(id)}`)
  return scenario
}

/** What a host does with a request, for a client or for the ceiling. */
interface Subject {
  check: (scenarios: ClientScenario[]) => Promise<void>
  measure: (scenario: ClientScenario, timing: Timing, batches: number[] | undefined) => Promise<Measured>
  close: () => Promise<void>
}

function clientSubject (driver: Driver): Subject {
  // Only ours coalesces, so only ours' batches are replayed.
  const recorder = driver.id === 'ours' ? new BatchRecorder((GET_KEYS[0] as string).length) : undefined
  return {
    check: async () => await smokeTest(driver, value),
    measure: async (scenario, timing) => await measureDriver(operation(driver, scenario, value), scenario.inFlight, timing, scenario.batched ? recorder : undefined),
    close: async () => await driver.close()
  }
}

function ceilingSubject (raw: RawPipeline): Subject {
  return {
    check: async (scenarios) => { for (const scenario of scenarios) await raw.verify(rawRequest(scenario, value)) },
    measure: async (scenario, timing, batches) => batches === undefined
      ? await raw.measure(rawRequest(scenario, value), scenario.inFlight, timing.warmupMs, timing.windowMs)
      : await raw.measureBatches(GET_KEYS, VALUE_BYTES, batches, scenario.inFlight, timing.warmupMs, timing.windowMs),
    close: async () => { raw.close() }
  }
}

/** The promise floor: one socket per operation, so each carries replies of one known length. */
function floorSubject (floors: { get: PromiseFloor, set: PromiseFloor }): Subject {
  const get = (inFlight: number) => (loop: number, n: number): Promise<Buffer | undefined> => floors.get.send(GET_KEYS[keyAt(loop, n, inFlight)] as string)
  const set = (inFlight: number) => (loop: number, n: number): Promise<Buffer | undefined> => floors.set.send(SET_KEYS[keyAt(loop, n, inFlight)] as string)
  return {
    check: async () => {
      const got = await floors.get.send(GET_KEYS[0] as string)
      if (got === undefined || !got.equals(value)) throw new Error(`promise floor: get returned ${JSON.stringify(got?.subarray(0, 40).toString('latin1'))}…`)
      await floors.set.send(SET_KEYS[0] as string)
    },
    measure: async (scenario, timing) => await measureDriver((scenario.op === 'set' ? set : get)(scenario.inFlight), scenario.inFlight, timing),
    close: async () => { floors.get.close(); floors.set.close() }
  }
}

/** A coalesced floor: gets only; the coalesced floor's batches recorded for the batched ceiling to replay (`record`). */
function coalescedFloorSubject (floor: CoalescedFloor, record: boolean): Subject {
  const recorder = record ? new BatchRecorder((GET_KEYS[0] as string).length) : undefined
  const get = (inFlight: number) => (loop: number, n: number): Promise<Buffer | undefined> => floor.get(GET_KEYS[keyAt(loop, n, inFlight)] as string)
  return {
    check: async () => {
      const got = await Promise.all(GET_KEYS.slice(0, 3).map(async (key) => await floor.get(key)))
      if (got.some((each) => each === undefined || !each.equals(value))) throw new Error('coalesced floor: a get returned another value')
    },
    measure: async (scenario, timing) => await measureDriver(get(scenario.inFlight), scenario.inFlight, timing, recorder),
    close: async () => { floor.close() }
  }
}

/** The multi-get floor: 100-key gets only. */
function multiGetFloorSubject (floor: MultiGetFloor): Subject {
  return {
    check: async () => {
      const found = await floor.getMulti(MULTI_KEY_LIST)
      if (found?.size !== MULTI_KEY_LIST.length || MULTI_KEY_LIST.some((key) => found.get(key)?.equals(value) !== true)) throw new Error('multi-get floor: a value was missing or wrong')
    },
    measure: async (scenario, timing) => await measureDriver(async () => await floor.getMulti(MULTI_KEY_LIST), scenario.inFlight, timing),
    close: async () => { floor.close() }
  }
}

async function answer (subject: Subject, request: HostRequest): Promise<HostReply> {
  if (request.type === 'check') {
    await subject.check(request.scenarios.map(scenarioOf))
    return { type: 'checked' }
  }
  return { type: 'measured', result: await subject.measure(scenarioOf(request.scenario), request.timing, request.batches) }
}

async function main (): Promise<void> {
  const [id, host, port, heapMb] = process.argv.slice(2)
  if (id === undefined || host === undefined || port === undefined) throw new Error('usage: host.js <client id | ceiling> <host> <port> [heap MB]')
  if (heapMb !== undefined && Number(heapMb) > 0) holdAppHeap(Number(heapMb))
  let subject: Subject
  let ready: HostReply
  if (id === CEILING_ID) {
    subject = ceilingSubject(await RawPipeline.connect(host, Number(port)))
    ready = { type: 'ready', id, label: 'raw socket (ceiling)', note: 'pre-built pipelined requests over the same keys, one reused read buffer, every reply counted and its end checked', ops: ['get', 'set', 'mget'] }
  } else if (id === PROMISE_FLOOR_ID) {
    const [get, set] = await Promise.all([
      PromiseFloor.connect(host, Number(port), floorGet((GET_KEYS[0] as string).length, VALUE_BYTES)),
      PromiseFloor.connect(host, Number(port), floorSet(value))
    ])
    subject = floorSubject({ get, set })
    ready = { type: 'ready', id, label: 'promise floor', note: 'the ceiling\'s socket behind a promise per command, each value copied out, the commands of a tick written together: the least a client whose commands return promises does', ops: ['get', 'set'] }
  } else if (id === COALESCED_FLOOR_ID) {
    subject = coalescedFloorSubject(await CoalescedFloor.connect(host, Number(port)), true)
    ready = { type: 'ready', id, label: 'coalesced floor', note: 'a socket behind a promise per get, the gets of a tick sent as one multi-key get, each value a view of the read buffer, of each reply line only END or the size of a value read: the least a coalescing client whose gets return promises does', ops: ['get'] }
  } else if (id === CONTRACT_FLOOR_ID) {
    subject = coalescedFloorSubject(await CoalescedFloor.connect(host, Number(port), true), false)
    ready = { type: 'ready', id, label: 'coalesced floor, DESIGN\'s checks', note: 'the coalesced floor, plus what DESIGN asks of any client: each key validated before it is queued (ours\' keyProblem), each VALUE\'s key checked against the key sent', ops: ['get'] }
  } else if (id === MULTI_GET_FLOOR_ID) {
    subject = multiGetFloorSubject(await MultiGetFloor.connect(host, Number(port)))
    ready = { type: 'ready', id, label: 'multi-get floor', note: 'a socket behind a promise per 100-key get, its values in a Map by the caller\'s keys, of each reply line only END or the size of a value read: the least a client whose getMulti returns a Map does', ops: ['mget'] }
  } else {
    const driver = createDriver(id, `${host}:${port}`)
    subject = clientSubject(driver)
    ready = { type: 'ready', id, label: driver.label, ...(driver.note === undefined ? {} : { note: driver.note }), ops: [...driver.ops] }
  }
  process.on('message', (request: HostRequest) => {
    answer(subject, request).then(
      (reply) => process.send?.(reply),
      (error: unknown) => process.send?.({ type: 'failed', message: error instanceof Error ? error.message : String(error) } satisfies HostReply)
    )
  })
  // The parent is gone or done: close the client so the process can end.
  process.once('disconnect', () => { subject.close().finally(() => process.exit(0)).catch(() => {}) })
  process.send?.(ready)
}

main().catch((error: unknown) => {
  process.send?.({ type: 'failed', message: error instanceof Error ? error.message : String(error) } satisfies HostReply)
  process.exitCode = 1
})
