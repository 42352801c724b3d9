// MemoryStore must answer exactly like memcached does through MemcachedStore:
// the same script runs against both and must give the same answers.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { MemcachedStore, MemoryStore, type SessionStore } from '../../src/index.js'
import { sleep, useMemcached } from './helpers.js'

const memcached = useMemcached()

const KINDS = {
  memcached: (): SessionStore => new MemcachedStore({ client: memcached.client }),
  memory: (): SessionStore => new MemoryStore()
}

let unique = 0
function key (): string {
  return `store-test:${process.pid}:${++unique}`
}

for (const [kind, make] of Object.entries(KINDS)) {
  describe(`SessionStore semantics (${kind})`, () => {
    test('add only when missing; get returns the value and a version', async () => {
      const store = make()
      const k = key()
      assert.equal(await store.get(k), undefined)
      assert.equal(await store.add(k, 'one', 60), true)
      assert.equal(await store.add(k, 'two', 60), false)
      const found = await store.get(k)
      assert.equal(found?.value, 'one')
      assert.equal(typeof found?.version, 'bigint')
      await store.close?.()
    })

    test('cas: stored at the current version, exists after another write, not_found when missing', async () => {
      const store = make()
      const k = key()
      await store.add(k, 'v1', 60)
      const first = await store.get(k)
      assert.ok(first !== undefined)
      assert.equal(await store.cas(k, 'v2', first.version, 60), 'stored')
      assert.equal(await store.cas(k, 'v3', first.version, 60), 'exists')
      const second = await store.get(k)
      assert.equal(second?.value, 'v2')
      assert.notEqual(second?.version, first.version)
      assert.equal(await store.cas(key(), 'v', first.version, 60), 'not_found')
      await store.delete(k)
      assert.equal(await store.cas(k, 'v4', second?.version ?? 0n, 60), 'not_found')
      assert.equal(await store.add(k, 'again', 60), true)
      assert.equal(await store.cas(k, 'v5', second?.version ?? 0n, 60), 'exists', 'a re-added key never matches an old version')
      await store.close?.()
    })

    test('touch and delete report whether the key existed', async () => {
      const store = make()
      const k = key()
      assert.equal(await store.touch(k, 60), false)
      assert.equal(await store.delete(k), false)
      await store.add(k, 'x', 60)
      assert.equal(await store.touch(k, 60), true)
      assert.equal(await store.delete(k), true)
      assert.equal(await store.get(k), undefined)
      await store.close?.()
    })

    test('expiry: ttl seconds relative, touch extends, 0 never expires, over 30 days works', async () => {
      const store = make()
      const short = key()
      const touched = key()
      const forever = key()
      const long = key()
      await store.add(short, 'x', 1)
      await store.add(touched, 'x', 1)
      await store.add(forever, 'x', 0)
      await store.add(long, 'x', 40 * 86_400)
      await store.touch(touched, 60)
      const longRecord = await store.get(long)
      assert.ok(longRecord !== undefined)
      assert.equal(await store.cas(long, 'y', longRecord.version, 45 * 86_400), 'stored')
      assert.equal(await store.touch(long, 50 * 86_400), true)
      // memcached's clock ticks once a second: ttl 1 is gone within 2 s.
      await sleep(2100)
      assert.equal(await store.get(short), undefined)
      assert.equal(await store.touch(short, 60), false)
      assert.equal(await store.add(short, 'fresh', 60), true)
      assert.equal((await store.get(touched))?.value, 'x')
      assert.equal((await store.get(forever))?.value, 'x')
      assert.equal((await store.get(long))?.value, 'y')
      await store.close?.()
    })

    test('a value too large rejects with MC_TOO_LARGE and leaves the old value', async () => {
      const store = make()
      const k = key()
      await store.add(k, 'small', 60)
      const found = await store.get(k)
      const big = 'x'.repeat(1_048_577)
      await assert.rejects(store.cas(k, big, found?.version ?? 0n, 60), { code: 'MC_TOO_LARGE' })
      await assert.rejects(store.add(key(), big, 60), { code: 'MC_TOO_LARGE' })
      assert.equal((await store.get(k))?.value, 'small')
      await store.close?.()
    })

    test('values round-trip as UTF-8 text', async () => {
      const store = make()
      const k = key()
      const text = '1::{"name":"Zoë ✓ 😀"}'
      await store.add(k, text, 60)
      assert.equal((await store.get(k))?.value, text)
      await store.close?.()
    })
  })
}

describe('MemoryStore specifics', () => {
  test('the size cap evicts the least recently used records', async () => {
    const store = new MemoryStore({ maxBytes: 300 })
    await store.add('a', 'x'.repeat(90), 60)
    await store.add('b', 'x'.repeat(90), 60)
    await store.add('c', 'x'.repeat(90), 60)
    await store.get('a')
    await store.add('d', 'x'.repeat(90), 60)
    assert.equal(await store.get('b'), undefined)
    assert.ok(await store.get('a') !== undefined)
    assert.ok(await store.get('d') !== undefined)
    assert.ok(store.byteSize <= 300)
    await store.close()
  })

  test('a custom maxValueSize is the item limit', async () => {
    const store = new MemoryStore({ maxValueSize: 10 })
    await assert.rejects(store.add('k', 'x'.repeat(11), 60), { code: 'MC_TOO_LARGE' })
    assert.equal(await store.add('k', 'x'.repeat(10), 60), true)
    await store.close()
  })

  test('sweeping drops expired records without a read; the timer does it too', async () => {
    const store = new MemoryStore({ sweepInterval: 50 })
    await store.add('short', 'x', 1)
    await store.add('kept', 'x', 60)
    assert.equal(store.size, 2)
    await sleep(1200)
    assert.equal(store.size, 1)
    store.sweep()
    assert.equal(store.size, 1)
    assert.equal(store.byteSize, 'kept'.length + 1)
    await store.close()
    assert.equal(store.size, 0)
  })
})
