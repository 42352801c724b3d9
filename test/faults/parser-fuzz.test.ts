// Fuzzing the reply parser with a fixed seed: random bytes must end in a
// protocol error or in valid events, never in an exception, a hang or
// unbounded buffering; valid replies split at random points must parse
// exactly as they do whole.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ReplyParser, type ParserSink, type Reply, type ReplyKind } from '../../src/protocol/parser.js'
import { seededRandom } from '../helpers/random.js'
import { keyOfLine } from '../helpers/value-key.js'

const KINDS: ReplyKind[] = ['values', 'store', 'delete', 'number', 'touch', 'ok', 'version', 'stats']
const LIMITS = { maxLine: 512, maxValue: 4096 }
const TOKENS = [
  'VALUE ', 'END', '\r\n', '\r', '\n', ' ', '0', '1', '9', '18446744073709551615', '4294967296', 'STORED', 'NOT_FOUND',
  'STAT ', 'VERSION ', 'ERROR', 'SERVER_ERROR ', 'CLIENT_ERROR ', 'k', '\u0000', '\u00ff', '-1', '99999999'
]

class FuzzSink implements ParserSink {
  readonly events: string[] = []
  errors = 0
  private turn = 0
  constructor (private readonly random: () => number) {}
  expecting (): ReplyKind | undefined {
    return KINDS[Math.floor(this.random() * KINDS.length)]
  }

  valueKey (buf: Buffer, start: number, end: number): string | undefined {
    this.check()
    const key = keyOfLine(buf, start, end)
    return key === '' ? undefined : key
  }

  onValue (key: string, flags: number, value: Buffer, cas: bigint | undefined): void {
    this.check()
    assert.ok(value.length <= LIMITS.maxValue)
    this.events.push(`V ${key} ${flags} ${value.toString('hex')} ${String(cas)}`)
  }

  onStat (name: string, value: string): void { this.check(); this.events.push(`S ${name} ${value}`) }
  onReply (reply: Reply): void { this.check(); this.turn++; this.events.push(`R ${JSON.stringify(reply, (_k, v: unknown) => typeof v === 'bigint' ? v.toString() : v)}`) }
  onProtocolError (): void { this.check(); this.errors++ }
  private check (): void { assert.equal(this.errors, 0, 'no event after a protocol error') }
}

function randomBytes (random: () => number): Buffer {
  const parts: Buffer[] = []
  const count = Math.floor(random() * 12)
  for (let i = 0; i < count; i++) {
    if (random() < 0.6) parts.push(Buffer.from(TOKENS[Math.floor(random() * TOKENS.length)] as string, 'latin1'))
    else parts.push(Buffer.from(Array.from({ length: 1 + Math.floor(random() * 8) }, () => Math.floor(random() * 256))))
  }
  return Buffer.concat(parts)
}

function feedSplit (parser: ReplyParser, bytes: Buffer, random: () => number): number {
  let maxBuffered = 0
  for (let pos = 0; pos < bytes.length;) {
    const size = 1 + Math.floor(random() * 16)
    parser.feed(bytes.subarray(pos, pos + size))
    maxBuffered = Math.max(maxBuffered, parser.buffered)
    pos += size
  }
  return maxBuffered
}

test('fuzz: 100,000 random byte strings give events or MC_PROTOCOL, never an exception or unbounded buffering', () => {
  const random = seededRandom(20261129)
  let protocolErrors = 0
  for (let i = 0; i < 100_000; i++) {
    const sink = new FuzzSink(random)
    const parser = new ReplyParser(sink, LIMITS)
    const maxBuffered = feedSplit(parser, randomBytes(random), random)
    assert.ok(maxBuffered <= LIMITS.maxLine + 1 + LIMITS.maxValue, `buffered ${maxBuffered} bytes`)
    protocolErrors += sink.errors
  }
  assert.ok(protocolErrors > 10_000, `the corpus must exercise the error paths (${protocolErrors})`)
})

test('fuzz: an endless line or a huge VALUE header is refused, not buffered', () => {
  const random = seededRandom(7)
  const sink = new FuzzSink(random)
  const parser = new ReplyParser(sink, LIMITS)
  for (let i = 0; i < 10_000 && sink.errors === 0; i++) parser.feed(Buffer.alloc(64, 0x41))
  assert.equal(sink.errors, 1)
  assert.equal(parser.buffered, 0)
})

function validReply (random: () => number): { kind: ReplyKind, bytes: string } {
  const kind = KINDS[Math.floor(random() * KINDS.length)] as ReplyKind
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)] as T
  switch (kind) {
    case 'values': {
      const values = Array.from({ length: Math.floor(random() * 4) }, (_, i) => {
        const data = Buffer.from(Array.from({ length: Math.floor(random() * 40) }, () => Math.floor(random() * 256))).toString('latin1')
        return `VALUE key${i} ${Math.floor(random() * 2 ** 32)} ${data.length}${random() < 0.5 ? ` ${Math.floor(random() * 1e9)}` : ''}\r\n${data}\r\n`
      })
      return { kind, bytes: `${values.join('')}END\r\n` }
    }
    case 'store': return { kind, bytes: `${pick(['STORED', 'NOT_STORED', 'EXISTS', 'NOT_FOUND', 'SERVER_ERROR out of memory'])}\r\n` }
    case 'delete': return { kind, bytes: `${pick(['DELETED', 'NOT_FOUND'])}\r\n` }
    case 'number': return { kind, bytes: `${pick(['0', '42', '18446744073709551615', 'NOT_FOUND', 'CLIENT_ERROR cannot increment'])}\r\n` }
    case 'touch': return { kind, bytes: `${pick(['TOUCHED', 'NOT_FOUND'])}\r\n` }
    case 'ok': return { kind, bytes: 'OK\r\n' }
    case 'version': return { kind, bytes: 'VERSION 1.6.18\r\n' }
    case 'stats': return { kind, bytes: 'STAT pid 1\r\nSTAT uptime 22\r\nEND\r\n' }
  }
}

class ScriptedSink extends FuzzSink {
  constructor (private readonly kinds: ReplyKind[]) { super(() => 0) }
  override expecting (): ReplyKind | undefined { return this.kinds[0] }
  override onReply (reply: Reply): void { this.kinds.shift(); super.onReply(reply) }
}

test('fuzz: 20,000 random valid reply sequences parse the same whole and split at random points', () => {
  const random = seededRandom(42)
  for (let i = 0; i < 20_000; i++) {
    const replies = Array.from({ length: 1 + Math.floor(random() * 5) }, () => validReply(random))
    const bytes = Buffer.from(replies.map((reply) => reply.bytes).join(''), 'latin1')
    const whole = new ScriptedSink(replies.map((reply) => reply.kind))
    new ReplyParser(whole, LIMITS).feed(bytes)
    const split = new ScriptedSink(replies.map((reply) => reply.kind))
    feedSplit(new ReplyParser(split, LIMITS), bytes, random)
    assert.equal(whole.errors, 0)
    assert.equal(whole.events.filter((event) => event.startsWith('R ')).length, replies.length)
    assert.deepEqual(split.events, whole.events)
  }
})
