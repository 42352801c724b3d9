/**
 * An A/B of two clients, or of two builds of ours, in alternating processes:
 * the way to judge a change of a few percent on a machine whose noise moves
 * a whole run by more (the A/A control's rounds range 0.6x to 1.7x). Each
 * pair runs A and B one after the other, each in a fresh process pinned as
 * the bench pins clients, against one memcached; the order flips every
 * pair, so drift within a pair does not favour one side. It prints each
 * pair's ratio of A to B, rate and CPU per command, and their medians.
 *
 *   node build/bench/ab.js get 128 [--a=ours] [--b=floor-coalesced-contract] [--pairs=8] [--seconds=2]
 *   node build/bench/ab.js get 1024 --b=ours --b-build=/tmp/old/dist/index.js
 *   node build/bench/ab.js get 1 --b=floor-promise --heap=200
 *
 * Clients: any of the bench's (drivers.ts), `floor-promise` (get and set),
 * `floor-coalesced` and `floor-coalesced-contract` (get only). `--heap=MB`
 * runs each side in a process that first holds that much of an app's heap,
 * as the bench's heap mode (app-heap.ts). `--a-build` / `--b-build` load ours
 * from another build's entry point, for a before/after of one change: for
 * example a `git worktree` of the older commit, built with `npx tsc -p
 * tsconfig.build.json`, with this repository's `node_modules` linked into it.
 */
import { Buffer } from 'node:buffer'
import type { ChildProcess } from 'node:child_process'
import { holdAppHeap } from './client/app-heap.js'
import { coalescedFloorDriver, createDriver, ours, promiseFloorDriver, type Driver } from './client/drivers.js'
import { COALESCED_FLOOR_ID, CONTRACT_FLOOR_ID, GET_KEYS, PROMISE_FLOOR_ID, SET_KEYS, benchValue, operation } from './client/workload.js'
import { choosePinning } from './lib/machine.js'
import { killAll, spawnPinned } from './lib/processes.js'
import { startMemcached } from './lib/servers.js'
import { alternatePairs, formatPairs, option } from './lib/pairs.js'
import { formatRatio, progress } from './lib/stats.js'
import { MemcachedClient } from '../src/index.js'

type Op = 'get' | 'set'

/** What one side measured in its process. */
interface Measured {
  /** Commands per second. */
  rate: number
  /** CPU time of the process per command, ns. */
  cpuNs: number
}

/** One side: a client id, and the build of ours it loads (undefined: this one). */
interface Side {
  client: string
  build: string | undefined
}

/** The client measured in a child process. */
async function connectClient (side: Side, address: string): Promise<Driver> {
  if (side.client === COALESCED_FLOOR_ID || side.client === CONTRACT_FLOOR_ID) return await coalescedFloorDriver(address, side.client === CONTRACT_FLOOR_ID)
  if (side.client === PROMISE_FLOOR_ID) return await promiseFloorDriver(address, benchValue())
  if (side.build === undefined) return createDriver(side.client, address)
  if (side.client !== 'ours' && side.client !== 'ours-nocoalesce') throw new Error('--a-build / --b-build load ours only')
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const other = require(side.build) as { MemcachedClient: typeof MemcachedClient }
  return ours(address, side.client === 'ours', other.MemcachedClient)
}

/** Child process: `inFlight` closed loops for a warmup second, then `seconds` measured; prints one {@link Measured} as JSON. */
async function child (side: Side, op: Op, inFlight: number, seconds: number, address: string, heapMb: number): Promise<void> {
  if (heapMb > 0) holdAppHeap(heapMb)
  const client = await connectClient(side, address)
  const run = operation(client, { op, inFlight }, benchValue())
  let stop = false
  let done = 0
  const loops = Array.from({ length: inFlight }, async (_, loop) => {
    for (let n = 0; !stop; n++) { await run(loop, n); done++ }
  })
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const before = done
  const cpu = process.cpuUsage()
  const started = performance.now()
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
  const used = process.cpuUsage(cpu)
  const commands = done - before
  const measured: Measured = { rate: commands * 1000 / (performance.now() - started), cpuNs: (used.user + used.system) * 1000 / commands }
  stop = true
  await Promise.all(loops)
  await client.close()
  process.stdout.write(`${JSON.stringify(measured)}\n`)
}

async function measureIn (core: number | undefined, side: Side, op: Op, inFlight: number, seconds: number, address: string, heapMb: number): Promise<Measured> {
  const args = [__filename, '--child', side.client, side.build ?? '-', op, String(inFlight), String(seconds), address, String(heapMb)]
  const running: ChildProcess = spawnPinned(core, process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  let output = ''
  running.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => running.once('exit', resolve))
  if (code !== 0) throw new Error(`${side.client} exited with ${String(code)}`)
  return JSON.parse(output) as Measured
}

function describe (side: Side): string {
  return side.build === undefined ? side.client : `${side.client} (${side.build})`
}

async function main (): Promise<void> {
  const args = process.argv.slice(2)
  if (args[0] === '--child') {
    const [, client, build, op, inFlight, seconds, address, heapMb] = args as [string, string, string, Op, string, string, string, string]
    return await child({ client, build: build === '-' ? undefined : build }, op, Number(inFlight), Number(seconds), address, Number(heapMb))
  }
  const [op, inFlightText] = args.filter((arg) => !arg.startsWith('--'))
  if ((op !== 'get' && op !== 'set') || inFlightText === undefined) {
    throw new Error('usage: ab.js <get|set> <inFlight> [--a=ours] [--b=floor-coalesced-contract] [--a-build=F] [--b-build=F] [--pairs=8] [--seconds=2] [--heap=MB]')
  }
  const a: Side = { client: option(args, 'a') ?? 'ours', build: option(args, 'a-build') }
  const b: Side = { client: option(args, 'b') ?? CONTRACT_FLOOR_ID, build: option(args, 'b-build') }
  const pairs = Number(option(args, 'pairs') ?? 8)
  const seconds = Number(option(args, 'seconds') ?? 2)
  const heapMb = Number(option(args, 'heap') ?? 0)
  const inFlight = Number(inFlightText)
  const pinning = choosePinning()
  const memcached = await startMemcached(pinning.load)
  try {
    const preload = new MemcachedClient({ servers: [memcached.address] })
    const value = benchValue()
    await Promise.all([...GET_KEYS, ...SET_KEYS].map(async (key) => await preload.set(key, value)))
    await preload.close()
    const rates: number[] = []
    const cpus: number[] = []
    const measure = async (side: Side): Promise<Measured> => await measureIn(pinning.measured, side, op, inFlight, seconds, memcached.address, heapMb)
    await alternatePairs(pairs, async () => await measure(a), async () => await measure(b), (ofA, ofB, pair) => {
      rates.push(ofA.rate / ofB.rate)
      cpus.push(ofA.cpuNs / ofB.cpuNs)
      progress(`pair ${pair + 1}: A ${Math.round(ofA.rate).toLocaleString('en-US')}/s ${Math.round(ofA.cpuNs)} ns, B ${Math.round(ofB.rate).toLocaleString('en-US')}/s ${Math.round(ofB.cpuNs)} ns: rate ${formatRatio(ofA.rate / ofB.rate)}, CPU ${formatRatio(ofA.cpuNs / ofB.cpuNs)}`)
    })
    const heap = heapMb > 0 ? `, ${heapMb} MB app heap` : ''
    process.stdout.write(`${op}, ${inFlight} in flight${heap}, A = ${describe(a)}, B = ${describe(b)}, ${pairs} pairs of ${seconds} s:\n`)
    process.stdout.write(`  rate A/B: ${formatPairs(rates)}\n`)
    process.stdout.write(`  CPU per command A/B: ${formatPairs(cpus)}\n`)
  } finally {
    await memcached.stop()
  }
}

main().catch((error: unknown) => {
  killAll()
  process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  process.exitCode = 1
})
