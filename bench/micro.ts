/**
 * Micro-benchmarks of the client's CPU-bound halves, no socket and no
 * memcached: encoding requests and parsing a 100-key reply. They vary far
 * less than the socket benchmarks on a busy machine, so they are the way to
 * compare two builds (run both alternately, several times, and compare the
 * medians).
 *
 *   node build/bench/micro.js [--rounds=7]
 */
import { performance } from 'node:perf_hooks'
import { MultiGet, RequestBatch, SingleRequest, StorageLine } from '../src/protocol/commands.js'
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

/** Encodes a 100-key get and parses its reply; returns the values found. */
function multiGetCase (): () => number {
  const reads = multiGetReply()
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

function main (): void {
  const rounds = Number(process.argv.find((arg) => arg.startsWith('--rounds='))?.slice(9) ?? 7)
  const multi = measure(multiGetCase(), rounds)
  process.stdout.write(`100-key get, encode + parse: ${(multi / 1000).toFixed(2)} us (${(multi / MULTI_KEYS.length).toFixed(0)} ns per value)\n`)
  const sets = measure(setCase(), rounds)
  process.stdout.write(`128 sets of 1 KiB, encode: ${(sets / 1000).toFixed(2)} us (${(sets / SET_KEYS.length).toFixed(0)} ns per set)\n`)
}

main()
