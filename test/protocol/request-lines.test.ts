// Request lines written straight into the batch (not built as strings) must
// be byte for byte what protocol.txt spells: compared here with the string
// form, for ASCII and UTF-8 keys and every size of exptime.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RequestBatch, SingleRequest, StorageLine, TouchLine } from '../../src/protocol/commands.js'

function written (request: SingleRequest<boolean>): string {
  const batch = new RequestBatch()
  request.encode(batch)
  const chunks = batch.take()
  return (chunks === undefined ? Buffer.alloc(0) : Array.isArray(chunks) ? Buffer.concat(chunks) : chunks).toString('utf8')
}

// Keys of up to 32 UTF-16 units are copied byte by byte, longer ones by Buffer's native write: both sides of that line, ASCII and UTF-8.
const KEYS = ['k', 'sess:0123456789abcdef', 'clé', '日本語', 'a'.repeat(32), 'a'.repeat(33), `sess:${'0123456789abcdef'.repeat(4)}`, 'é'.repeat(40), 'a'.repeat(250)]

test('a touch line is `touch <key> <exptime>\\r\\n` for ASCII and UTF-8 keys, short and long, relative and absolute exptimes', () => {
  const noop = (): void => {}
  for (const key of KEYS) {
    for (const expiry of [0, 1, 9, 10, 86_400, 2_592_000, 4_102_444_800]) {
      const request = new SingleRequest('touch', new TouchLine(key, expiry), undefined, 0, () => true, noop, noop)
      assert.equal(written(request), `touch ${key} ${expiry}\r\n`, `${key} ${expiry}`)
    }
  }
})

test('a storage line and a single-key get line carry the key byte for byte, short and long, ASCII and UTF-8', () => {
  const noop = (): void => {}
  for (const key of KEYS) {
    const set = new SingleRequest('store', new StorageLine('set', key, 3, 60, 1, undefined), 'v', 1, () => true, noop, noop)
    assert.equal(written(set), `set ${key} 3 60 1\r\nv\r\n`, key)
    const batch = new RequestBatch()
    batch.retrievalOfKey('gets', key)
    assert.equal((batch.take() as Buffer).toString('utf8'), `gets ${key}\r\n`, key)
  }
})

test('a cas line carries the unique in decimal, exact across the double range and up to 2^64 - 1', () => {
  const noop = (): void => {}
  const uniques = [0n, 1n, 9n, 10n, 123_456_789n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 10n ** 17n + 7n, 2n ** 64n - 1n]
  for (const cas of uniques) {
    const request = new SingleRequest('store', new StorageLine('cas', 'clé', 7, 86_400, 3, cas), 'abc', 3, () => true, noop, noop)
    assert.equal(written(request), `cas clé 7 86400 3 ${cas}\r\nabc\r\n`, String(cas))
  }
  const set = new SingleRequest('store', new StorageLine('set', 'k', 0, 0, 1, undefined), 'v', 1, () => true, noop, noop)
  assert.equal(written(set), 'set k 0 0 1\r\nv\r\n')
})
