// Multi-key replies matched by key in any order, with no socket: the real
// requests (MultiGet, a coalesced GetBatch, a single get) are encoded into a
// RequestBatch and their reply bytes fed to the real parser, whole, byte by
// byte and split at random points. Proxies answer backend by backend
// (twemproxy), so a VALUE may name any requested key not answered yet; a key
// never requested, or answered twice, is still a protocol error.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { GetBatch, MultiGet, RequestBatch, SingleRequest, type Request } from '../../src/protocol/commands.js'
import { MemcachedError } from '../../src/protocol/errors.js'
import { ReplyParser, type ParserSink, type Reply } from '../../src/protocol/parser.js'
import { seededRandom } from '../helpers/random.js'

/** What one request ended with: its values by key (in arrival order), or the protocol error. */
interface Outcome {
  values: Array<[string, string]>
  protocolError: string | undefined
  completed: boolean
}

/** Feeds `pieces` to a parser whose only request in flight is `request`. */
function feed (request: Request, pieces: Buffer[]): Outcome {
  const outcome: Outcome = { values: [], protocolError: undefined, completed: false }
  let inFlight: Request | undefined = request
  const sink: ParserSink = {
    expecting: () => inFlight?.kind,
    valueKey: (buf, start, end) => inFlight?.claim(buf, start, end),
    onValue: (key, flags, value, cas) => { inFlight?.onValue(key, value, flags, cas) },
    onStat: () => {},
    onReply: (reply: Reply) => { inFlight?.complete(reply, 'test'); inFlight = undefined; outcome.completed = true },
    onProtocolError: (message) => { outcome.protocolError = message }
  }
  const parser = new ReplyParser(sink, { maxLine: 8192, maxValue: 1 << 20 })
  for (const piece of pieces) parser.feed(piece)
  return outcome
}

function reply (blocks: Array<[string, string]>, end = true): Buffer {
  const text = blocks.map(([key, value]) => `VALUE ${key} 0 ${Buffer.byteLength(value)}\r\n${value}\r\n`).join('') + (end ? 'END\r\n' : '')
  return Buffer.from(text)
}

/** The same bytes whole, byte by byte, and in 20 random splits. */
function splittings (bytes: Buffer): Array<[string, Buffer[]]> {
  const random = seededRandom(0x0dd)
  const ways: Array<[string, Buffer[]]> = [['whole', [bytes]], ['byte by byte', [...bytes].map((byte) => Buffer.from([byte]))]]
  for (let round = 0; round < 20; round++) {
    const pieces: Buffer[] = []
    for (let pos = 0; pos < bytes.length;) {
      const size = 1 + Math.floor(random() * 13)
      pieces.push(bytes.subarray(pos, pos + size))
      pos += size
    }
    ways.push([`random split ${round}`, pieces])
  }
  return ways
}

/** A getMulti share for `keys`, encoded; `found` fills as values arrive. */
function multiGet (keys: string[]): { request: MultiGet, found: Map<string, Buffer>, settled: { error?: MemcachedError, done: boolean } } {
  const found = new Map<string, Buffer>()
  const settled: { error?: MemcachedError, done: boolean } = { done: false }
  const request = new MultiGet(keys, found, () => { settled.done = true }, (error) => { settled.error = error; settled.done = true })
  request.encode(new RequestBatch())
  return { request, found, settled }
}

const KEYS = ['a', 'bb', 'clé', 'd', 'e:1', 'f']

test('a multi-key reply in any order: every VALUE goes to its key, keys left at END are misses', () => {
  // Backend order, as twemproxy answers: not the request order, misses (d, f) interleaved.
  const bytes = reply([['e:1', 'E'], ['bb', 'B'], ['clé', 'C'], ['a', 'A']])
  for (const [how, pieces] of splittings(bytes)) {
    const { request, found, settled } = multiGet(KEYS)
    const outcome = feed(request, pieces)
    assert.equal(outcome.protocolError, undefined, how)
    assert.ok(settled.done && settled.error === undefined, `${how}: resolved`)
    assert.deepEqual(Object.fromEntries([...found].map(([key, value]) => [key, value.toString()])), { a: 'A', bb: 'B', 'clé': 'C', 'e:1': 'E' }, how)
  }
})

test('a multi-key reply in request order, then one out of order, then in order again', () => {
  const keys = Array.from({ length: 50 }, (_, i) => `k${i}`)
  // In order up to k29 with every 5th key missing, then k4 and k14 late, then the rest in order.
  const inOrder = keys.filter((_, i) => i % 5 !== 4 && i < 30)
  const late = ['k4', 'k14']
  const rest = keys.filter((_, i) => i >= 30 && i % 5 !== 4)
  const bytes = reply([...inOrder, ...late, ...rest].map((key) => [key, key.toUpperCase()]))
  for (const [how, pieces] of splittings(bytes)) {
    const { request, found, settled } = multiGet(keys)
    assert.equal(feed(request, pieces).protocolError, undefined, how)
    assert.ok(settled.done && settled.error === undefined, `${how}: resolved`)
    assert.deepEqual([...found.keys()].sort(), [...inOrder, ...late, ...rest].sort(), how)
  }
})

test('a key requested twice may be answered twice, a third answer is a protocol error', () => {
  for (const [how, pieces] of splittings(reply([['a', '1'], ['b', '2'], ['a', '3']]))) {
    const { request, settled } = multiGet(['a', 'b', 'a'])
    assert.equal(feed(request, pieces).protocolError, undefined, `${how}: twice`)
    assert.ok(settled.done, how)
  }
  for (const [how, pieces] of splittings(reply([['a', '1'], ['a', '2'], ['b', '3'], ['a', '4']]))) {
    const { request, settled } = multiGet(['a', 'b', 'a'])
    const outcome = feed(request, pieces)
    assert.equal(outcome.protocolError, 'VALUE for key "a" that was not requested, or was already answered', how)
    assert.ok(!settled.done, `${how}: the request is left for the connection to fail`)
  }
})

test('a key answered twice is a protocol error, in order or not', () => {
  const cases: Array<Array<[string, string]>> = [
    [['a', '1'], ['a', '2']],
    [['d', '1'], ['a', '2'], ['d', '3']],
    [['f', '1'], ['a', '2'], ['bb', '3'], ['a', '4']]
  ]
  for (const blocks of cases) {
    const key = (blocks.at(-1) as [string, string])[0]
    for (const [how, pieces] of splittings(reply(blocks))) {
      const { request } = multiGet(KEYS)
      assert.equal(feed(request, pieces).protocolError, `VALUE for key ${JSON.stringify(key)} that was not requested, or was already answered`, `${blocks.map(([k]) => k).join(',')} ${how}`)
    }
  }
})

test('a key never requested is a protocol error, before or after out-of-order values', () => {
  const cases: Array<Array<[string, string]>> = [
    [['zz', '1']],
    [['a', '1'], ['zz', '2']],
    [['f', '1'], ['a', '2'], ['zz', '3']],
    // A prefix or an extension of a requested key is another key.
    [['e', '1']],
    [['e:10', '1']],
    [['cl', '1']]
  ]
  for (const blocks of cases) {
    const key = (blocks.at(-1) as [string, string])[0]
    for (const [how, pieces] of splittings(reply(blocks))) {
      const { request } = multiGet(KEYS)
      assert.equal(feed(request, pieces).protocolError, `VALUE for key ${JSON.stringify(key)} that was not requested, or was already answered`, `${key} ${how}`)
    }
  }
})

test('a coalesced get batch answered out of order settles each caller with its own value; misses resolve undefined', () => {
  const bytes = reply([['d', 'D'], ['a', 'A'], ['clé', 'C']])
  for (const [how, pieces] of splittings(bytes)) {
    const results = new Map<string, string | undefined>()
    const resend: Request[] = []
    const [first, ...rest] = ['a', 'bb', 'clé', 'd', 'a'] as const
    const resolveOf = (key: string) => (value: Buffer | undefined): void => { results.set(`${key}#${results.size}`, value?.toString()) }
    const batch = new GetBatch<Buffer>({ verb: 'get', result: (value) => value }, (request) => { resend.push(request) }, first, resolveOf(first), (error) => { throw error })
    for (const key of rest) batch.add(key, resolveOf(key), (error) => { throw error })
    batch.encode(new RequestBatch())
    assert.equal(feed(batch, pieces).protocolError, undefined, how)
    assert.deepEqual([...results.values()].sort(), ['A', 'A', 'C', 'D', undefined].sort(), how)
    assert.equal(resend.length, 0, how)
  }
})

test('a coalesced batch split in two: each half keeps the deadline, counts its own callers and settles them from its own reply', () => {
  const results: string[] = []
  const resolveOf = (key: string) => (value: Buffer | undefined): void => { results.push(`${key}=${value?.toString() ?? 'miss'}`) }
  const batch = new GetBatch<Buffer>({ verb: 'get', result: (value) => value }, () => {}, 'a', resolveOf('a'), (error) => { throw error })
  for (const key of ['bb', 'clé', 'd', 'a', 'd', 'd']) batch.add(key, resolveOf(key), (error) => { throw error })
  batch.deadline = 1234
  assert.equal(batch.keyCount, 4)
  const tail = batch.splitOff(2)
  assert.deepEqual([batch.keyCount, tail.keyCount], [2, 2])
  assert.deepEqual([batch.callers, tail.callers, tail.deadline], [3, 4, 1234])
  const requests = new RequestBatch()
  batch.encode(requests)
  tail.encode(requests)
  const taken = requests.take()
  const written = Buffer.concat(Array.isArray(taken) ? taken : taken === undefined ? [] : [taken])
  assert.equal(written.toString(), 'get a bb\r\nget clé d\r\n')
  assert.equal(feed(batch, [reply([['bb', 'B'], ['a', 'A']])]).protocolError, undefined)
  assert.deepEqual(results.splice(0).sort(), ['a=A', 'a=A', 'bb=B'])
  assert.equal(feed(tail, [reply([['d', 'D']])]).protocolError, undefined)
  assert.deepEqual(results.sort(), ['clé=miss', 'd=D', 'd=D', 'd=D'])
})

test('callers joining the halves of a split batch: a key already in a half joins its callers there, a key of the other half is asked anew', () => {
  const results: string[] = []
  const resolveOf = (key: string) => (value: Buffer | undefined): void => { results.push(`${key}=${value?.toString() ?? 'miss'}`) }
  const batch = new GetBatch<Buffer>({ verb: 'get', result: (value) => value }, () => {}, 'a', resolveOf('a'), (error) => { throw error })
  for (const key of ['b', 'c', 'd']) batch.add(key, resolveOf(key), (error) => { throw error })
  const tail = batch.splitOff(2)
  for (const key of ['b', 'c']) batch.add(key, resolveOf(key), (error) => { throw error })
  for (const key of ['d', 'b', 'c']) tail.add(key, resolveOf(key), (error) => { throw error })
  assert.deepEqual([batch.keyCount, batch.callers, tail.keyCount, tail.callers], [3, 4, 3, 5])
  const requests = new RequestBatch()
  batch.encode(requests)
  tail.encode(requests)
  const taken = requests.take()
  assert.equal(Buffer.concat(Array.isArray(taken) ? taken : taken === undefined ? [] : [taken]).toString(), 'get a b c\r\nget c d b\r\n')
  assert.equal(feed(batch, [reply([['a', 'A'], ['b', 'B'], ['c', 'C']])]).protocolError, undefined)
  assert.deepEqual(results.splice(0).sort(), ['a=A', 'b=B', 'b=B', 'c=C'])
  assert.equal(feed(tail, [reply([['c', 'C'], ['d', 'D'], ['b', 'B']])]).protocolError, undefined)
  assert.deepEqual(results.sort(), ['b=B', 'c=C', 'c=C', 'd=D', 'd=D'])
})

test('a coalesced batch split key by key: one get line per key, each part counting and settling its own callers', () => {
  const results: string[] = []
  const resolveOf = (key: string) => (value: Buffer | undefined): void => { results.push(`${key}=${value?.toString() ?? 'miss'}`) }
  const batch = new GetBatch<Buffer>({ verb: 'gets', result: (value) => value }, () => {}, 'a', resolveOf('a'), (error) => { throw error })
  for (const key of ['bb', 'a', 'clé', 'bb', 'bb']) batch.add(key, resolveOf(key), (error) => { throw error })
  batch.deadline = 99
  const parts = [batch, ...batch.splitEach()]
  assert.deepEqual(parts.map((part) => [part.keyCount, part.callers, part.deadline]), [[1, 2, 99], [1, 3, 99], [1, 1, 99]])
  const requests = new RequestBatch()
  for (const part of parts) part.encode(requests)
  const taken = requests.take()
  assert.equal(Buffer.concat(Array.isArray(taken) ? taken : taken === undefined ? [] : [taken]).toString(), 'gets a\r\ngets bb\r\ngets clé\r\n')
  assert.equal(feed(parts[1] as Request, [reply([['bb', 'B']])]).protocolError, undefined)
  assert.deepEqual(results.splice(0), ['bb=B', 'bb=B', 'bb=B'])
  assert.equal(feed(batch, [reply([['bb', 'B']])]).protocolError, 'VALUE for key "bb" that was not requested, or was already answered', 'the first part asks for its own key only')
  // Left with one key, the first part is a plain one-key batch: reusable once answered.
  assert.equal(batch.release(), true)
})

test('a single get answered twice is a protocol error', () => {
  for (const [how, pieces] of splittings(reply([['a', '1'], ['a', '2']]))) {
    const request = new SingleRequest<undefined>('values', 'get a\r\n', undefined, 0, () => undefined, () => {}, () => {}, 'a')
    assert.equal(feed(request, pieces).protocolError, 'VALUE for key "a" that was not requested, or was already answered', how)
  }
})

test('a coalesced batch answered SERVER_ERROR (a proxy with a dead backend) asks for each key again on its own, once', () => {
  const settled = new Map<string, string>()
  const resend: Request[] = []
  const resolveOf = (key: string) => (value: Buffer | undefined): void => { settled.set(`${key}#${settled.size}`, `value ${String(value)}`) }
  const rejectOf = (key: string) => (error: MemcachedError): void => { settled.set(`${key}#${settled.size}`, error.code) }
  const batch = new GetBatch<Buffer>({ verb: 'gets', result: (value) => value }, (request) => { resend.push(request) }, 'a', resolveOf('a'), rejectOf('a'))
  for (const key of ['b', 'b', 'c']) batch.add(key, resolveOf(key), rejectOf(key))
  batch.encode(new RequestBatch())
  feed(batch, [Buffer.from('SERVER_ERROR Connection refused\r\n')])
  assert.equal(settled.size, 0, 'no caller settled by the batch error')
  assert.equal(resend.length, 3, 'one request per distinct key')
  assert.deepEqual(resend.map((request) => request.callers), [1, 2, 1])
  // Each retry is a plain single-key gets: a SERVER_ERROR now fails its callers.
  const lines = resend.map((request) => {
    const out = new RequestBatch()
    request.encode(out)
    const chunks = out.take()
    return (chunks === undefined ? '' : Array.isArray(chunks) ? Buffer.concat(chunks) : chunks).toString()
  })
  assert.deepEqual(lines, ['gets a\r\n', 'gets b\r\n', 'gets c\r\n'])
  feed(resend[0] as Request, [Buffer.from('VALUE a 0 1 7\r\nA\r\nEND\r\n')])
  feed(resend[1] as Request, [Buffer.from('SERVER_ERROR Connection refused\r\n')])
  feed(resend[2] as Request, [Buffer.from('END\r\n')])
  assert.deepEqual([...settled.values()].sort(), ['MC_SERVER_ERROR', 'MC_SERVER_ERROR', 'value A', 'value undefined'])
})

test('a coalesced batch that fails settles every caller once, repeated ones included, and a late reply reaches none of them', () => {
  const settled: string[] = []
  const resolveOf = (key: string) => (value: Buffer | undefined): void => { settled.push(`${key}=${value?.toString() ?? 'miss'}`) }
  const rejectOf = (key: string) => (error: MemcachedError): void => { settled.push(`${key}:${error.code}`) }
  const batch = new GetBatch<Buffer>({ verb: 'get', result: (value) => value }, () => {}, 'a', resolveOf('a'), rejectOf('a'))
  for (const key of ['b', 'a', 'c', 'b', 'c', 'c']) batch.add(key, resolveOf(key), rejectOf(key))
  batch.encode(new RequestBatch())
  // The first key answered before the connection broke; the rest fail.
  assert.equal(feed(batch, [reply([['a', 'A']], false)]).protocolError, undefined)
  batch.fail(new MemcachedError('MC_CONNECTION', 'lost'))
  assert.deepEqual(settled.splice(0).sort(), ['a=A', 'a=A', 'b:MC_CONNECTION', 'b:MC_CONNECTION', 'c:MC_CONNECTION', 'c:MC_CONNECTION', 'c:MC_CONNECTION'])
  batch.fail(new MemcachedError('MC_CONNECTION', 'lost again'))
  batch.complete({ type: 'end' }, 'test')
  assert.deepEqual(settled, [], 'nobody settled twice')
})

test('an answered single-key batch, released and reused, answers only its new caller', () => {
  const calls: string[] = []
  const resend: Request[] = []
  const retrieval = { verb: 'get', result: (value: Buffer) => value } as const
  const batch = new GetBatch<Buffer>(retrieval, (request) => { resend.push(request) }, 'a', (value) => { calls.push(`first ${String(value)}`) }, () => { calls.push('first rejected') })
  batch.add('a', (value) => { calls.push(`second ${String(value)}`) }, () => { calls.push('second rejected') })
  batch.encode(new RequestBatch())
  feed(batch, [Buffer.from('VALUE a 0 1\r\nA\r\nEND\r\n')])
  assert.equal(batch.release(), true)
  batch.reuse(retrieval, 'b', (value) => { calls.push(`third ${String(value)}`) }, () => { calls.push('third rejected') })
  assert.equal(batch.callers, 1)
  assert.equal(batch.full, false, 'a reused batch takes keys again until written')
  const out = new RequestBatch()
  batch.encode(out)
  assert.equal(String(out.take()), 'get b\r\n', 'only the new key is asked')
  // The old key is not the new caller's: its VALUE is a protocol error, not an answer.
  assert.equal(feed(batch, [Buffer.from('VALUE a 0 1\r\nA\r\nEND\r\n')]).protocolError, 'VALUE for key "a" that was not requested, or was already answered')
  batch.fail(new MemcachedError('MC_CONNECTION', 'lost'))
  assert.deepEqual(calls, ['first A', 'second A', 'third rejected'])
  // Answered again with a miss after another reuse: only that caller resolves, with undefined.
  assert.equal(batch.release(), true)
  batch.reuse(retrieval, 'c', (value) => { calls.push(`fourth ${String(value)}`) }, () => { calls.push('fourth rejected') })
  batch.encode(new RequestBatch())
  feed(batch, [Buffer.from('END\r\n')])
  assert.deepEqual(calls, ['first A', 'second A', 'third rejected', 'fourth undefined'])
  assert.equal(resend.length, 0)
})

test('a batch of several keys is not kept for reuse', () => {
  const batch = new GetBatch<Buffer>({ verb: 'get', result: (value) => value }, () => {}, 'a', () => {}, () => {})
  batch.add('b', () => {}, () => {})
  batch.encode(new RequestBatch())
  feed(batch, [Buffer.from('END\r\n')])
  assert.equal(batch.release(), false)
})
