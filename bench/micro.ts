/**
 * Micro-benchmarks of the client's CPU-bound halves, no socket and no
 * memcached: encoding requests and parsing a 100-key reply. They vary far
 * less than the socket benchmarks on a busy machine, so they are the way to
 * compare two builds (run both alternately, several times, and compare the
 * medians).
 *
 * Then the floors, which are not targets: the least work any client must do
 * in plain JS to hand out a 100-key get's values (the raw-socket ceiling does
 * none of it: it knows each reply's length in advance), what a promise
 * per command costs (the raw writer has none), and what a coalesced get
 * costs per key, the least and ours, against the batched ceiling of the
 * last full run.
 *
 *   node build/bench/micro.js [--rounds=7]
 */
import { Buffer } from 'node:buffer'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { GetBatch, MultiGet, RequestBatch, SingleRequest, StorageLine, keyProblem, type Retrieval } from '../src/protocol/commands.js'
import { MAX_READ_BYTES, MIN_READ_BYTES, readBufferSize } from '../src/protocol/connection.js'
import { ReplyParser, type ParserSink, type Reply } from '../src/protocol/parser.js'
import { median } from './lib/stats.js'

const MULTI_KEYS = Array.from({ length: 100 }, (_, i) => `bench:get:${String(i).padStart(4, '0')}`)
const SET_KEYS = Array.from({ length: 128 }, (_, i) => `bench:set:${String(i).padStart(4, '0')}`)
const VALUE = Buffer.alloc(1024, 97)

/** The reply memcached sends to the 100-key get, cut into 64 KiB reads. */
function multiGetReply (): Buffer[] {
  const blocks = MULTI_KEYS.map((key) => Buffer.concat([Buffer.from(`VALUE ${key} 0 ${VALUE.length}\r\n`), VALUE, Buffer.from('\r\n')]))
  const reply = Buffer.concat([...blocks, Buffer.from('END\r\n')])
  const reads: Buffer[] = []
  for (let pos = 0; pos < reply.length; pos += 65536) reads.push(Buffer.from(reply.subarray(pos, pos + 65536)))
  return reads
}

/** Encodes a 100-key get and parses its reply, in 64 KiB reads or in one; returns the values found. */
function multiGetCase (oneRead = false): () => number {
  const reads = oneRead ? [Buffer.concat(multiGetReply())] : multiGetReply()
  const batch = new RequestBatch()
  let request: MultiGet | undefined
  const sink: ParserSink = {
    expecting: () => 'values',
    valueKey: (buf, start, end) => request?.claim(buf, start, end),
    onValue: (key, _flags, value) => request?.onValue(key, value),
    onStat: () => {},
    onReply: (reply: Reply) => request?.complete(reply, 'micro'),
    onProtocolError: (message) => { throw new Error(message) }
  }
  const parser = new ReplyParser(sink, { maxLine: 8192, maxValue: 1 << 20 })
  return () => {
    const found = new Map<string, Buffer>()
    request = new MultiGet(MULTI_KEYS.slice(), found, () => {}, (error) => { throw error })
    request.encode(batch)
    batch.take()
    for (const read of reads) parser.feed(read)
    return found.size
  }
}

/** Encodes 128 sets of 1 KiB, as one tick at 128 in flight does. */
function setCase (): () => number {
  const batch = new RequestBatch()
  const ignore = (): void => {}
  return () => {
    for (const key of SET_KEYS) {
      new SingleRequest('store', new StorageLine('set', key, 0, 0, VALUE.length, undefined), VALUE, VALUE.length, () => undefined, ignore, ignore).encode(batch)
    }
    const chunks = batch.take()
    return chunks === undefined ? 0 : Array.isArray(chunks) ? chunks.length : 1
  }
}

type View = new (array: ArrayBufferLike, offset: number, length: number) => Buffer
/** The cheapest Buffer over existing memory: Buffer's species, as the parser makes its views. */
const View = (Buffer as unknown as Record<symbol, View>)[Symbol.species] as View
const indexOf = Buffer.prototype.indexOf

/**
 * The floor of a 100-key get's parse, in steps: the whole reply in one read
 * (no value spans two reads), each VALUE line's end found with one `indexOf`,
 * its size read from the digits before the CR, the value skipped; then a view
 * of each value; then a Map of them, keyed by the caller's own strings in
 * request order (not one byte of a key compared: less than a client that
 * checks what the server answered). The server's reply is trusted blindly.
 */
function multiGetFloorCase (step: 'headers' | 'views' | 'map'): () => number {
  const reply = Buffer.concat(multiGetReply())
  const array = reply.buffer
  const offset = reply.byteOffset
  return () => {
    const found = step === 'map' ? new Map<string, Buffer>() : undefined
    let pos = 0
    let values = 0
    let key = 0
    for (;;) {
      const lf: number = indexOf.call(reply, 10, pos)
      // `END\r\n`: the only line that short.
      if (lf - pos === 4) break
      let size = 0
      let scale = 1
      for (let at = lf - 2; reply[at] !== 32; at--, scale *= 10) size += ((reply[at] as number) - 48) * scale
      pos = lf + 1
      if (step === 'headers') values += size
      else {
        const value = new View(array, offset + pos, size)
        if (found === undefined) values += value.length
        else found.set(MULTI_KEYS[key++] as string, value)
      }
      pos += size + 2
    }
    return found === undefined ? values : found.size
  }
}

/**
 * 128 callers awaiting one promise each, settled as replies would settle
 * them: one call is a promise made, resolved and awaited. The least a client
 * with a promise per command adds to the raw writer; `calls` per run.
 */
async function promisePerCommand (calls: number): Promise<number> {
  const waiting: Array<() => void> = []
  let left = calls
  // As the client: the method returns the promise itself, not an async wrapper.
  const command = (): Promise<void> => new Promise<void>((resolve) => { waiting.push(resolve) })
  const loop = async (): Promise<void> => { while (left-- > 0) await command() }
  const loops = Array.from({ length: 128 }, loop)
  while (waiting.length > 0) {
    for (const resolve of waiting.splice(0)) resolve()
    // Lets every continuation run (and make its next promise) before the next "replies".
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
  await Promise.all(loops)
  return calls
}

/** The reply memcached sends to `get k1 … kN` for `keys`, all hits, 1 KiB values. */
function coalescedReply (keys: readonly string[]): Buffer {
  const blocks = keys.map((key) => Buffer.concat([Buffer.from(`VALUE ${key} 0 ${VALUE.length}\r\n`), VALUE, Buffer.from('\r\n')]))
  return Buffer.concat([...blocks, Buffer.from('END\r\n')])
}

/**
 * The least JS any client with a promise-returning `get(key)` must run per
 * coalesced key: `callers` closed loops each await one call, which keeps the
 * key and the promise's resolve; once all are asked, one `get k1 … kN` line
 * is encoded, its reply (in one read, in request order, trusted blindly:
 * no key compared) is cut into a view per value, and each caller resolved
 * with its own. No key validated, no caller bookkeeping beyond two arrays,
 * no copy, no socket. Resolves with the calls made.
 */
function coalescedGetFloor (callers: number): (calls: number) => Promise<number> {
  const keys = MULTI_KEYS_OF(callers)
  const reply = coalescedReply(keys)
  const array = reply.buffer
  const offset = reply.byteOffset
  const line = Buffer.allocUnsafe(4 + callers * 16 + 2)
  return async (calls) => {
    const asked: string[] = []
    const waiting: Array<(value: Buffer) => void> = []
    let left = calls
    // As the client: the method returns the promise itself, not an async wrapper.
    const get = (key: string): Promise<Buffer> => new Promise<Buffer>((resolve) => { asked.push(key); waiting.push(resolve) })
    const loops = keys.map(async (key) => { while (left-- > 0) await get(key) })
    let checksum = 0
    while (waiting.length > 0) {
      let pos = line.write('get', 0, 'latin1')
      for (const key of asked) {
        line[pos++] = 32
        pos += line.write(key, pos, 'latin1')
      }
      line[pos++] = 13
      line[pos++] = 10
      checksum += pos
      let at = 0
      for (const resolve of waiting) {
        const lf: number = indexOf.call(reply, 10, at)
        let size = 0
        for (let digit = lf - 2, scale = 1; reply[digit] !== 32; digit--, scale *= 10) size += ((reply[digit] as number) - 48) * scale
        resolve(new View(array, offset + lf + 1, size))
        at = lf + 1 + size + 2
      }
      asked.length = 0
      waiting.length = 0
      await callersAskAgain()
    }
    await Promise.all(loops)
    if (checksum < 0) throw new Error('negative checksum')
    return calls
  }
}

/**
 * The same calls through the client's own code, still without a socket:
 * each call validates its key and joins the tick's {@link GetBatch} as
 * `MemcachedClient.get` does; the batch is encoded into a
 * {@link RequestBatch}, and its reply is fed to a {@link ReplyParser} from
 * a read buffer of the size the connection would use, so values are copied
 * or viewed as on a socket.
 */
function coalescedGetOurs (callers: number): (calls: number) => Promise<number> {
  const keys = MULTI_KEYS_OF(callers)
  const reply = coalescedReply(keys)
  // Reads as the connection's buffer grows to them: up to MAX_READ_BYTES each.
  let size = MIN_READ_BYTES
  while (size < reply.length && size < MAX_READ_BYTES) size = readBufferSize(size, size)
  const reads: Array<[Buffer, number]> = []
  for (let at = 0; at < reply.length; at += size) {
    const read = Buffer.allocUnsafeSlow(size)
    reads.push([read, reply.copy(read, 0, at, at + size)])
  }
  const retrieval: Retrieval<Buffer> = { verb: 'get', result: (value, _flags, _cas, copy) => copy ? Buffer.from(value) : value }
  const out = new RequestBatch()
  let batch: GetBatch<Buffer> | undefined
  const sink: ParserSink = {
    expecting: () => 'values',
    valueKey: (buf, start, end) => batch?.claim(buf, start, end),
    onValue: (key, flags, value, cas) => { batch?.onValue(key, value, flags, cas) },
    onStat: () => {},
    onReply: (reply: Reply) => { batch?.complete(reply, 'micro') },
    onProtocolError: (message) => { throw new Error(message) }
  }
  const parser = new ReplyParser(sink, { maxLine: 8192, maxValue: 1 << 20 })
  const fail = (error: Error): void => { throw error }
  const noResend = (): void => { throw new Error('resend') }
  return async (calls) => {
    let left = calls
    let asked = 0
    const get = (key: string): Promise<Buffer | undefined> => new Promise<Buffer | undefined>((resolve, reject) => {
      if (keyProblem(key) !== undefined) return reject(new Error(key))
      asked++
      if (batch === undefined) batch = new GetBatch(retrieval, noResend, key, resolve, fail)
      else batch.add(key, resolve, fail)
    })
    const loops = keys.map(async (key) => { while (left-- > 0) await get(key) })
    while (asked > 0) {
      batch?.encode(out)
      out.take()
      for (const [read, bytes] of reads) parser.feed(read, bytes)
      batch = undefined
      asked = 0
      await callersAskAgain()
    }
    await Promise.all(loops)
    return calls
  }
}

/**
 * Lets the callers' continuations run (each resumes from its await and asks
 * again) in microtasks, without a turn of the event loop: that turn, its
 * poll and the socket's system calls are in the ceiling's CPU already.
 */
async function callersAskAgain (): Promise<void> {
  for (let hop = 0; hop < 4; hop++) await undefined
}

/** Calls per run of the coalesced cases. */
const COALESCED_CALLS = 200_000

const MULTI_KEYS_OF = (count: number): string[] => Array.from({ length: count }, (_, i) => `bench:get:${String(i).padStart(4, '0')}`)

/** The batched ceiling at some depth in the last full run (`bench/results/full.json`). */
interface BatchedCeiling {
  /** CPU per key, ns. */
  cpuNs: number
  /** Keys per second. */
  keysPerSec: number
}

/** The batched ceiling at `inFlight` from the last full run; undefined when it has none. */
function batchedCeiling (inFlight: number): BatchedCeiling | undefined {
  try {
    const full = JSON.parse(readFileSync(path.resolve(__dirname, '../../bench/results/full.json'), 'utf8')) as {
      client?: { summary?: Array<{ scenario: string, client: string, cpuUs: number | null, opsPerSec: number | null }> }
    }
    const row = full.client?.summary?.find((entry) => entry.scenario === `get-${inFlight}` && entry.client === 'ceiling-batched')
    if (typeof row?.cpuUs !== 'number' || typeof row.opsPerSec !== 'number') return undefined
    return { cpuNs: row.cpuUs * 1000, keysPerSec: row.opsPerSec }
  } catch {
    return undefined
  }
}

/**
 * What `ns` of JS per key on top of the batched ceiling's work leaves of it:
 * by CPU time (the ceiling's CPU per key plus `ns`: the bench's "from CPU
 * time" ratio), a bound; and an estimate of the rate if that JS ran on the
 * round trip's critical path, not a bound: a pipelined loop overlaps it with
 * memcached's work (run I's ours passed it at 128 in flight).
 */
function boundOf (ceiling: BatchedCeiling | undefined, ns: number): string {
  if (ceiling === undefined) return ''
  const byCpu = ceiling.cpuNs / (ceiling.cpuNs + ns)
  const byRate = 1 / (1 + ns * 1e-9 * ceiling.keysPerSec)
  return ` (at most ${byCpu.toFixed(2)}x by CPU time; about ${byRate.toFixed(2)}x by rate if on the critical path)`
}

/** Median over rounds (after a warmup) of the ns per call of `run`; each round lasts about 300 ms. */
function measure (run: () => number, rounds: number): number {
  let checksum = 0
  const samples: number[] = []
  for (let round = -1; round < rounds; round++) {
    let calls = 0
    const began = performance.now()
    while (performance.now() - began < 300) { checksum += run(); calls++ }
    if (round >= 0) samples.push((performance.now() - began) * 1e6 / calls)
  }
  // Uses the results, so no call can be optimized away.
  if (checksum < 0) throw new Error('negative checksum')
  return median(samples)
}

/** Median over rounds (after a warmup) of the ns of CPU time per call of the asynchronous `run`, which reports its calls. */
async function measureAsync (run: () => Promise<number>, rounds: number): Promise<number> {
  const samples: number[] = []
  for (let round = -1; round < rounds; round++) {
    const cpu = process.cpuUsage()
    const calls = await run()
    const used = process.cpuUsage(cpu)
    if (round >= 0) samples.push((used.user + used.system) * 1000 / calls)
  }
  return median(samples)
}

function perValue (ns: number): string {
  return `${(ns / 1000).toFixed(2)} us (${(ns / MULTI_KEYS.length).toFixed(0)} ns per value)`
}

async function main (): Promise<void> {
  const rounds = Number(process.argv.find((arg) => arg.startsWith('--rounds='))?.slice(9) ?? 7)
  const multi = measure(multiGetCase(), rounds)
  process.stdout.write(`100-key get, encode + parse: ${perValue(multi)}\n`)
  const sets = measure(setCase(), rounds)
  process.stdout.write(`128 sets of 1 KiB, encode: ${(sets / 1000).toFixed(2)} us (${(sets / SET_KEYS.length).toFixed(0)} ns per set)\n`)
  process.stdout.write(`100-key get, encode + parse, the reply in one read: ${perValue(measure(multiGetCase(true), rounds))}\n`)
  process.stdout.write('floors, the reply in one read (not targets; the raw-socket ceiling does none of this):\n')
  process.stdout.write(`  100-key get, find 100 VALUE lines and their sizes: ${perValue(measure(multiGetFloorCase('headers'), rounds))}\n`)
  process.stdout.write(`  ... and a Buffer view of each value: ${perValue(measure(multiGetFloorCase('views'), rounds))}\n`)
  process.stdout.write(`  ... and a Map of them by the caller's keys: ${perValue(measure(multiGetFloorCase('map'), rounds))}\n`)
  const promise = await measureAsync(async () => await promisePerCommand(200_000), rounds)
  process.stdout.write(`  a promise per command (made, resolved, awaited; 128 callers): ${promise.toFixed(0)} ns of CPU per command\n`)
  process.stdout.write('coalesced gets, no socket: ns of CPU per key, and what that much JS on top of the batched ceiling (full.json) leaves of it:\n')
  // Runs of 200,000 calls: short ones at 16 callers measured the compiler's warmup, not the steady state.
  for (const callers of [16, 128, 1024]) {
    // Whole rounds: every batch asks every caller's key, as the reply answers them all.
    const calls = Math.floor(COALESCED_CALLS / callers) * callers
    const floor = await measureAsync(async () => await coalescedGetFloor(callers)(calls), rounds)
    const ours = await measureAsync(async () => await coalescedGetOurs(callers)(calls), rounds)
    const ceiling = batchedCeiling(callers)
    const against = ceiling === undefined ? '' : `; ceiling ${ceiling.cpuNs.toFixed(0)} ns, ${Math.round(ceiling.keysPerSec).toLocaleString('en-US')} keys/s`
    process.stdout.write(`  ${callers} in flight: floor ${floor.toFixed(0)} ns${boundOf(ceiling, floor)}; ours ${ours.toFixed(0)} ns${boundOf(ceiling, ours)}${against}\n`)
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  process.exitCode = 1
})
