// Byte-level tests of the reply parser: every fixture fed whole, byte by
// byte, and split at random points (fixed seed), with no socket involved.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ReplyParser, VIEW_MIN_BYTES, type ParserSink, type Reply, type ReplyKind } from '../../src/protocol/parser.js'
import { seededRandom } from '../helpers/random.js'
import { keyOfLine } from '../helpers/value-key.js'

type Event =
  | { value: [string, number, string, string | undefined] }
  | { stat: [string, string] }
  | { reply: Reply }
  | { protocolError: string }

/** Records what the parser emits; `kinds` are the commands in flight, oldest first. */
class RecordingSink implements ParserSink {
  readonly events: Event[] = []
  /** Keys the command in flight never asked for. */
  readonly unasked = new Set<string>()
  constructor (private readonly kinds: ReplyKind[]) {}
  expecting (): ReplyKind | undefined { return this.kinds[0] }
  valueKey (buf: Buffer, start: number, end: number): string | undefined {
    const key = keyOfLine(buf, start, end)
    return key === '' || this.unasked.has(key) ? undefined : key
  }

  onValue (key: string, flags: number, value: Buffer, cas: bigint | undefined): void {
    this.events.push({ value: [key, flags, value.toString('latin1'), cas?.toString()] })
  }

  onStat (name: string, value: string): void { this.events.push({ stat: [name, value] }) }
  onReply (reply: Reply): void {
    this.kinds.shift()
    this.events.push({ reply })
  }

  onProtocolError (message: string): void { this.events.push({ protocolError: message }) }
}

const LIMITS = { maxLine: 8192, maxValue: 1024 * 1024 }

function parse (kinds: ReplyKind[], pieces: Buffer[]): Event[] {
  const sink = new RecordingSink([...kinds])
  const parser = new ReplyParser(sink, LIMITS)
  for (const piece of pieces) parser.feed(piece)
  return sink.events
}

function splits (bytes: Buffer, random: () => number): Buffer[] {
  const pieces: Buffer[] = []
  let pos = 0
  while (pos < bytes.length) {
    const size = 1 + Math.floor(random() * 9)
    pieces.push(bytes.subarray(pos, pos + size))
    pos += size
  }
  return pieces
}

interface Fixture {
  name: string
  kinds: ReplyKind[]
  input: string
  expected: Event[]
}

const end: Event = { reply: { type: 'end' } }
const status = (word: 'STORED' | 'NOT_STORED' | 'EXISTS' | 'NOT_FOUND' | 'DELETED' | 'TOUCHED' | 'OK'): Event =>
  ({ reply: { type: 'status', status: word } })

const fixtures: Fixture[] = [
  { name: 'miss', kinds: ['values'], input: 'END\r\n', expected: [end] },
  {
    name: 'one value',
    kinds: ['values'],
    input: 'VALUE k 5 3\r\nabc\r\nEND\r\n',
    expected: [{ value: ['k', 5, 'abc', undefined] }, end]
  },
  {
    name: 'value holding CRLF END CRLF, NUL and non-UTF-8 bytes',
    kinds: ['values'],
    input: 'VALUE k 0 9\r\n\r\nEND\r\n\u0000\u00ff\r\nEND\r\n',
    expected: [{ value: ['k', 0, '\r\nEND\r\n\u0000\u00ff', undefined] }, end]
  },
  {
    name: 'gets with cas and max flags',
    kinds: ['values'],
    input: 'VALUE key:1 4294967295 2 18446744073709551615\r\nhi\r\nEND\r\n',
    expected: [{ value: ['key:1', 4294967295, 'hi', '18446744073709551615'] }, end]
  },
  {
    name: 'cas uniques on both sides of the 15-digit fast path, and above 2^53',
    kinds: ['values'],
    input: 'VALUE a 0 1 999999999999999\r\n1\r\nVALUE b 0 1 1000000000000000\r\n2\r\nVALUE c 0 1 9007199254740993\r\n3\r\nVALUE d 0 1 0\r\n4\r\nEND\r\n',
    expected: [
      { value: ['a', 0, '1', '999999999999999'] }, { value: ['b', 0, '2', '1000000000000000'] },
      { value: ['c', 0, '3', '9007199254740993'] }, { value: ['d', 0, '4', '0'] }, end
    ]
  },
  {
    name: 'multi-key values and an empty value',
    kinds: ['values'],
    input: 'VALUE a 0 1\r\n1\r\nVALUE b 0 0\r\n\r\nVALUE c 1 2\r\n33\r\nEND\r\n',
    expected: [{ value: ['a', 0, '1', undefined] }, { value: ['b', 0, '', undefined] }, { value: ['c', 1, '33', undefined] }, end]
  },
  {
    name: 'several replies in one chunk',
    kinds: ['store', 'store', 'store', 'store', 'delete', 'delete', 'touch', 'number', 'number', 'ok', 'version'],
    input: 'STORED\r\nNOT_STORED\r\nEXISTS\r\nNOT_FOUND\r\nDELETED\r\nNOT_FOUND\r\nTOUCHED\r\n42\r\nNOT_FOUND\r\nOK\r\nVERSION 1.6.18\r\n',
    expected: [
      status('STORED'), status('NOT_STORED'), status('EXISTS'), status('NOT_FOUND'), status('DELETED'), status('NOT_FOUND'),
      status('TOUCHED'), { reply: { type: 'number', value: 42n } }, status('NOT_FOUND'), status('OK'),
      { reply: { type: 'version', version: '1.6.18' } }
    ]
  },
  {
    name: 'incr at the top of the 64-bit range',
    kinds: ['number'],
    input: '18446744073709551615\r\n',
    expected: [{ reply: { type: 'number', value: 18446744073709551615n } }]
  },
  {
    name: 'stats',
    kinds: ['stats'],
    input: 'STAT pid 12\r\nSTAT version 1.6.18\r\nSTAT rusage_user 0.1 0.2\r\nEND\r\n',
    expected: [{ stat: ['pid', '12'] }, { stat: ['version', '1.6.18'] }, { stat: ['rusage_user', '0.1 0.2'] }, end]
  },
  {
    name: 'error replies complete any command',
    kinds: ['store', 'values', 'number'],
    input: 'SERVER_ERROR object too large for cache\r\nERROR\r\nCLIENT_ERROR bad command line format\r\n',
    expected: [
      { reply: { type: 'error', kind: 'SERVER_ERROR', message: 'object too large for cache' } },
      { reply: { type: 'error', kind: 'ERROR', message: '' } },
      { reply: { type: 'error', kind: 'CLIENT_ERROR', message: 'bad command line format' } }
    ]
  },
  {
    name: 'UTF-8 key',
    kinds: ['values'],
    input: Buffer.from('VALUE clé 0 1\r\nx\r\nEND\r\n').toString('latin1'),
    expected: [{ value: ['clé', 0, 'x', undefined] }, end]
  },
  { name: 'a reply to nothing is a protocol error', kinds: [], input: 'STORED\r\n', expected: [{ protocolError: 'reply received with no command in flight' }] },
  {
    name: 'a status that does not fit the command is a protocol error',
    kinds: ['values'],
    input: 'STORED\r\n',
    expected: [{ protocolError: 'unexpected reply "STORED" to a values command' }]
  },
  {
    name: 'TOUCHED answers a touch only',
    kinds: ['store'],
    input: 'TOUCHED\r\n',
    expected: [{ protocolError: 'unexpected reply "TOUCHED" to a store command' }]
  },
  {
    name: 'a touch reply that only begins with TOUCHED is a protocol error',
    kinds: ['touch'],
    input: 'TOUCHEDX\r\n',
    expected: [{ protocolError: 'unexpected reply "TOUCHEDX" to a touch command' }]
  },
  { name: 'LF without CR', kinds: ['store'], input: 'STORED\n', expected: [{ protocolError: 'reply line not terminated by CRLF' }] },
  {
    name: 'value not followed by CRLF',
    kinds: ['values'],
    input: 'VALUE k 0 2\r\nabcEND\r\n',
    expected: [{ protocolError: 'VALUE data not followed by CRLF' }]
  },
  { name: 'malformed VALUE line', kinds: ['values'], input: 'VALUE k x 2\r\nab\r\nEND\r\n', expected: [{ protocolError: 'malformed VALUE line' }] },
  { name: 'VALUE line with a key only', kinds: ['values'], input: 'VALUE k\r\nEND\r\n', expected: [{ protocolError: 'malformed VALUE line' }] },
  { name: 'VALUE line without a size', kinds: ['values'], input: 'VALUE k 0\r\nEND\r\n', expected: [{ protocolError: 'malformed VALUE line' }] },
  { name: 'flags above 32 bits', kinds: ['values'], input: 'VALUE k 4294967296 1\r\na\r\nEND\r\n', expected: [{ protocolError: 'malformed VALUE line' }] },
  { name: 'non-numeric incr reply', kinds: ['number'], input: '12a\r\n', expected: [{ protocolError: 'unexpected reply "12a" to incr/decr' }] },
  { name: 'incr reply above 64 bits', kinds: ['number'], input: '18446744073709551616\r\n', expected: [{ protocolError: 'incr/decr reply exceeds 64 bits' }] },
  {
    name: 'nothing after a protocol error',
    kinds: ['store', 'store'],
    input: 'GARBAGE\r\nSTORED\r\n',
    expected: [{ protocolError: 'unexpected reply "GARBAGE" to a store command' }]
  }
]

for (const fixture of fixtures) {
  test(`parser: ${fixture.name}`, () => {
    const bytes = Buffer.from(fixture.input, 'latin1')
    assert.deepEqual(parse(fixture.kinds, [bytes]), fixture.expected, 'whole')
    const bytewise = [...bytes].map((byte) => Buffer.from([byte]))
    assert.deepEqual(parse(fixture.kinds, bytewise), fixture.expected, 'byte by byte')
    const random = seededRandom(0x5eed)
    for (let round = 0; round < 50; round++) {
      assert.deepEqual(parse(fixture.kinds, splits(bytes, random)), fixture.expected, `random split ${round}`)
    }
  })
}

test('parser: a line longer than maxLine is a protocol error, not an allocation', () => {
  const sink = new RecordingSink(['values'])
  const parser = new ReplyParser(sink, { maxLine: 64, maxValue: 1024 })
  for (let i = 0; i < 100; i++) parser.feed(Buffer.alloc(10, 0x41))
  assert.deepEqual(sink.events, [{ protocolError: 'reply line longer than 64 bytes' }])
})

test('parser: a VALUE larger than maxValue is refused before allocating', () => {
  const sink = new RecordingSink(['values'])
  const parser = new ReplyParser(sink, { maxLine: 64, maxValue: 1024 })
  parser.feed(Buffer.from('VALUE k 0 4000000000\r\n'))
  assert.deepEqual(sink.events, [{ protocolError: 'VALUE of 4000000000 bytes exceeds the 1024-byte limit' }])
})

test('parser: a VALUE for a key the command never asked for is a protocol error before its data is read', () => {
  const sink = new RecordingSink(['values'])
  sink.unasked.add('other')
  const parser = new ReplyParser(sink, LIMITS)
  parser.feed(Buffer.from('VALUE mine 0 1\r\na\r\nVALUE other 0 3\r\nabc\r\nEND\r\n'))
  assert.deepEqual(sink.events, [
    { value: ['mine', 0, 'a', undefined] },
    { protocolError: 'VALUE for key "other" that was not requested, or was already answered' }
  ])
})

/** `text` in memory of its own, as a socket read that fills its buffer. */
function ownChunk (text: string): Buffer {
  const bytes = Buffer.from(text)
  const chunk = Buffer.alloc(bytes.length)
  bytes.copy(chunk)
  return chunk
}

test('parser: values from VIEW_MIN_BYTES up in a chunk that fills its memory are views, reported by takeViewed; smaller ones are copies', () => {
  const received: Buffer[] = []
  const sink = new RecordingSink(['values', 'values'])
  sink.onValue = (_key, _flags, data) => { received.push(data) }
  const parser = new ReplyParser(sink, LIMITS)
  const small = ownChunk(`VALUE s 0 ${VIEW_MIN_BYTES - 1}\r\n${'a'.repeat(VIEW_MIN_BYTES - 1)}\r\nEND\r\n`)
  parser.feed(small)
  assert.equal(parser.takeViewed(), false, 'a small value is copied')
  small.fill(0)
  assert.equal(received[0]?.toString(), 'a'.repeat(VIEW_MIN_BYTES - 1), 'the copy does not change with the chunk')
  const large = ownChunk(`VALUE l 0 ${VIEW_MIN_BYTES}\r\n${'b'.repeat(VIEW_MIN_BYTES)}\r\nEND\r\n`)
  parser.feed(large)
  assert.equal(parser.takeViewed(), true, 'a large value is a view')
  assert.equal(parser.takeViewed(), false, 'takeViewed resets')
  assert.equal(received[1]?.buffer, large.buffer, 'the view shares the chunk memory')
  const view = received[1] as Buffer
  assert.ok(Buffer.isBuffer(view) && Object.getPrototypeOf(view) === Buffer.prototype, 'the view is a plain Buffer')
  assert.equal(view.byteOffset - large.byteOffset, large.indexOf('b'), 'the view starts at the data')
  assert.deepStrictEqual(view, Buffer.from('b'.repeat(VIEW_MIN_BYTES)))
})

test('parser: a large value in a read that fills little of its buffer is copied, so the buffer can take the next read', () => {
  // One 1 KiB get in a 64 KiB read buffer: a view would cost a fresh 64 KiB buffer per get.
  const received: Buffer[] = []
  const sink = new RecordingSink(['values'])
  sink.onValue = (_key, _flags, data) => { received.push(data) }
  const parser = new ReplyParser(sink, LIMITS)
  const readBuffer = Buffer.alloc(64 * 1024)
  const bytes = readBuffer.write(`VALUE k 0 1024\r\n${'c'.repeat(1024)}\r\nEND\r\n`)
  parser.feed(readBuffer.subarray(0, bytes))
  assert.equal(parser.takeViewed(), false, 'copied, not viewed')
  readBuffer.fill(0)
  assert.equal(received[0]?.toString(), 'c'.repeat(1024), 'the copy does not change when the buffer takes the next read')
  assert.ok((received[0]?.buffer.byteLength ?? Infinity) <= Buffer.poolSize, 'copied into the shared pool, not a buffer of its own')
})

test('parser: a read of one loopback segment into a buffer doubled to 128 KiB hands its values out as views, one of a third of that is copied', () => {
  // A read that fills 64 KiB doubles the buffer (connection.ts); the next
  // read is often one loopback segment, 65,415 bytes: just under half.
  const received: Buffer[] = []
  const sink = new RecordingSink(['values', 'values'])
  sink.onValue = (_key, _flags, data) => { received.push(data) }
  const parser = new ReplyParser(sink, LIMITS)
  const block = (key: string): string => `VALUE ${key} 0 1024\r\n${'s'.repeat(1024)}\r\n`
  const readInto = (buffer: Buffer, fill: number): number => {
    let text = ''
    for (let i = 0; (text + block(`k${i}`)).length + 'END\r\n'.length <= fill; i++) text += block(`k${i}`)
    return buffer.write(`${text}END\r\n`)
  }
  const segment = Buffer.alloc(128 * 1024)
  const bytes = readInto(segment, 65_415)
  assert.ok(bytes > 64_000 && bytes < 64 * 1024, `${bytes} bytes: under half of the buffer`)
  parser.feed(segment.subarray(0, bytes))
  assert.equal(parser.takeViewed(), true, 'a segment in a doubled buffer: views')
  assert.equal(received[0]?.buffer, segment.buffer)
  const third = Buffer.alloc(128 * 1024)
  parser.feed(third.subarray(0, readInto(third, 128 * 1024 / 3)))
  assert.equal(parser.takeViewed(), false, 'a third of the buffer: copies')
  assert.notEqual(received.at(-1)?.buffer, third.buffer)
})

test('parser: a multi-value reply split into two reads at every byte offset gives the same values, and none changes when the read buffer takes the next read', () => {
  // Values of VIEW_MIN_BYTES and more around small ones and a miss, with cas:
  // every header, value and CRLF is cut at every byte once. Each read lands
  // in one buffer as the connection's do, and that buffer is overwritten
  // (the next read) unless the parser says it handed out a view of it.
  const large = (fill: string): string => fill.repeat(VIEW_MIN_BYTES + 3)
  const reply = `VALUE key:a 1 ${VIEW_MIN_BYTES + 3} 11\r\n${large('a')}\r\nVALUE key:b 0 2 12\r\nbb\r\n` +
    `VALUE key:c 4294967295 ${VIEW_MIN_BYTES + 3} 13\r\n${large('c')}\r\nEND\r\n`
  const bytes = Buffer.from(reply)
  const expected = [
    { value: ['key:a', 1, large('a'), '11'] }, { value: ['key:b', 0, 'bb', '12'] }, { value: ['key:c', 4294967295, large('c'), '13'] }, end
  ]
  for (let cut = 1; cut < bytes.length; cut++) {
    const sink = new RecordingSink(['values'])
    const values: Buffer[] = []
    const record = sink.onValue.bind(sink)
    sink.onValue = (key, flags, value, cas) => { values.push(value); record(key, flags, value, cas) }
    const parser = new ReplyParser(sink, LIMITS)
    let readBuffer = Buffer.alloc(bytes.length)
    for (const [from, to] of [[0, cut], [cut, bytes.length]] as const) {
      const read = readBuffer.subarray(0, bytes.copy(readBuffer, 0, from, to))
      parser.feed(read)
      if (parser.takeViewed()) readBuffer = Buffer.alloc(bytes.length)
      else readBuffer.fill(0x5a)
    }
    assert.deepEqual(sink.events, expected, `cut at ${cut}`)
    assert.deepEqual(values.map((value) => value.toString('latin1')), [large('a'), 'bb', large('c')], `values kept intact, cut at ${cut}`)
    assert.ok(parser.idle, `idle after END, cut at ${cut}`)
  }
})

test('parser: a read buffer fed with the length of each read parses only those bytes, whatever the buffer holds past them', () => {
  // The connection feeds its reused read buffer as it is, with the read's
  // length: older bytes lie past it, line ends among them.
  const stream = Buffer.from(`VALUE k 0 5 9\r\nhello\r\nVALUE long 0 ${VIEW_MIN_BYTES}\r\n${'v'.repeat(VIEW_MIN_BYTES)}\r\nEND\r\nSTORED\r\n`)
  const kinds: ReplyKind[] = ['values', 'store']
  const expected = parse(kinds, [stream])
  const stale = Buffer.from('END\r\nSTORED\r\nVALUE k 0 1\r\nx\r\n'.repeat(64))
  for (let cut = 1; cut < stream.length; cut++) {
    const sink = new RecordingSink([...kinds])
    const parser = new ReplyParser(sink, LIMITS)
    const readBuffer = Buffer.alloc(4096)
    for (const piece of [stream.subarray(0, cut), stream.subarray(cut)]) {
      stale.copy(readBuffer)
      piece.copy(readBuffer)
      parser.feed(readBuffer, piece.length)
    }
    assert.deepEqual(sink.events, expected, `split at ${cut}`)
  }
})

test('parser: a 1 MiB value arriving in 64 KiB chunks is copied once and byte-exact', () => {
  const value = Buffer.alloc(1024 * 1024)
  for (let i = 0; i < value.length; i++) value[i] = (i * 7) & 0xff
  const bytes = Buffer.concat([Buffer.from(`VALUE big 0 ${value.length}\r\n`), value, Buffer.from('\r\nEND\r\n')])
  const received: Buffer[] = []
  const sink = new RecordingSink(['values'])
  sink.onValue = (_key, _flags, data) => { received.push(data) }
  const parser = new ReplyParser(sink, LIMITS)
  for (let pos = 0; pos < bytes.length; pos += 65536) parser.feed(bytes.subarray(pos, pos + 65536))
  assert.equal(received.length, 1)
  assert.ok((received[0] as Buffer).equals(value))
  assert.deepEqual(sink.events, [end])
  assert.ok(parser.idle)
})

test('parser: reset() starts a new stream after a protocol error', () => {
  const sink = new RecordingSink(['store', 'store'])
  const parser = new ReplyParser(sink, LIMITS)
  parser.feed(Buffer.from('JUNK\r\n'))
  parser.reset()
  parser.feed(Buffer.from('STORED\r\n'))
  assert.deepEqual(sink.events, [{ protocolError: 'unexpected reply "JUNK" to a store command' }, status('STORED')])
})
