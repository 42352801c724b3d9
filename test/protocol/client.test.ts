// Every command of MemcachedClient against real memcached processes.
import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { MemcachedClient } from '../../src/protocol/client.js'
import { MemcachedError, type MemcachedErrorCode } from '../../src/protocol/errors.js'
import { MemcachedServer } from '../helpers/memcached.js'

let server: MemcachedServer
let other: MemcachedServer
let client: MemcachedClient

before(async () => {
  [server, other] = await Promise.all([MemcachedServer.start(), MemcachedServer.start()])
  client = new MemcachedClient({ servers: [server.address], maxQueue: 50_000 })
})

after(async () => {
  await client.close()
  await Promise.all([server.stop(), other.stop()])
})

/** Shows `record` every chunk the process writes to any socket while `body` runs, with the socket. */
async function watchWrites (body: () => Promise<unknown>, record: (socket: net.Socket, chunk: Buffer) => void): Promise<void> {
  const original = net.Socket.prototype.write
  net.Socket.prototype.write = function (this: net.Socket, chunk: unknown, ...rest: unknown[]): boolean {
    record(this, typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array))
    return Reflect.apply(original, this, [chunk, ...rest]) as boolean
  } as typeof original
  try {
    await body()
  } finally {
    net.Socket.prototype.write = original
  }
}

/** Records every byte the process writes to any socket while `body` runs. */
async function captureWrites (body: () => Promise<unknown>): Promise<Buffer[]> {
  const writes: Buffer[] = []
  await watchWrites(body, (_, chunk) => { writes.push(chunk) })
  return writes
}

async function rejectsWith (promise: Promise<unknown>, code: MemcachedErrorCode): Promise<MemcachedError> {
  const error = await promise.then(() => assert.fail(`expected ${code}`), (error: unknown) => error)
  assert.ok(error instanceof MemcachedError, `expected a MemcachedError, got ${String(error)}`)
  assert.equal(error.code, code, error.message)
  return error
}

function allBytes (): Buffer {
  return Buffer.from(Array.from({ length: 256 }, (_, i) => i))
}

describe('storage and retrieval', () => {
  test('values round-trip byte-exact, including CRLF END CRLF, NUL and non-UTF-8 bytes', async () => {
    const tricky = Buffer.concat([Buffer.from('\r\nEND\r\nVALUE x 0 1\r\n'), allBytes(), Buffer.from('\r\n')])
    await client.set('bytes', tricky)
    assert.deepEqual(await client.get('bytes'), tricky)
    await client.set('text', 'héllo wörld ✓')
    assert.equal((await client.get('text'))?.toString('utf8'), 'héllo wörld ✓')
    await client.set('empty', '')
    assert.deepEqual(await client.get('empty'), Buffer.alloc(0))
    await client.set('u8', new Uint8Array([1, 2, 3]))
    assert.deepEqual(await client.get('u8'), Buffer.from([1, 2, 3]))
    const big = Buffer.alloc(900 * 1024, 7)
    await client.set('big', big)
    assert.deepEqual(await client.get('big'), big)
  })

  test('a miss is undefined, not an error', async () => {
    assert.equal(await client.get('never-set'), undefined)
    assert.equal(await client.gets('never-set'), undefined)
    assert.equal(await client.gat('never-set', 10), undefined)
  })

  test('flags are unsigned 32-bit and come back with gets', async () => {
    await client.set('flags', 'x', { flags: 0xffffffff })
    const item = await client.gets('flags')
    assert.equal(item?.flags, 0xffffffff)
    assert.equal(item?.value.toString(), 'x')
    for (const flags of [-1, 2 ** 32, 1.5, Number.NaN]) {
      await assert.rejects(client.set('flags', 'y', { flags }), TypeError)
    }
    assert.equal((await client.get('flags'))?.toString(), 'x')
  })

  test('add, replace, append, prepend report NOT_STORED as false', async () => {
    await client.delete('cond')
    assert.equal(await client.replace('cond', 'r'), false)
    assert.equal(await client.append('cond', 'a'), false)
    assert.equal(await client.prepend('cond', 'p'), false)
    assert.equal(await client.add('cond', 'first'), true)
    assert.equal(await client.add('cond', 'second'), false)
    assert.equal(await client.append('cond', '>'), true)
    assert.equal(await client.prepend('cond', '<'), true)
    assert.equal((await client.get('cond'))?.toString(), '<first>')
    assert.equal(await client.replace('cond', 'replaced'), true)
    assert.equal((await client.get('cond'))?.toString(), 'replaced')
  })

  test('cas: stored, exists after a concurrent write, not_found after delete', async () => {
    await client.set('cas', 'v1')
    const first = await client.gets('cas')
    assert.ok(first !== undefined && typeof first.cas === 'bigint')
    assert.equal(await client.cas('cas', 'v2', first.cas), 'stored')
    assert.equal(await client.cas('cas', 'v3', first.cas), 'exists')
    assert.equal((await client.get('cas'))?.toString(), 'v2')
    const second = await client.gets('cas')
    await client.delete('cas')
    assert.equal(await client.cas('cas', 'v4', second?.cas ?? 0n), 'not_found')
    await assert.rejects(client.cas('cas', 'v5', -1n), TypeError)
  })

  test('delete reports NOT_FOUND as false', async () => {
    await client.set('del', '1')
    assert.equal(await client.delete('del'), true)
    assert.equal(await client.delete('del'), false)
    assert.equal(await client.get('del'), undefined)
  })

  test('getMulti returns hits only, each key once however often it was asked', async () => {
    await client.set('m1', 'one')
    await client.set('m2', 'two')
    await client.delete('m3')
    const found = await client.getMulti(['m1', 'm2', 'm3', 'm1', 'm3', 'm1'])
    assert.deepEqual([...found.entries()].map(([key, value]) => [key, value.toString()]).sort(), [['m1', 'one'], ['m2', 'two']])
    assert.equal((await client.getMulti([])).size, 0)
  })

  test('getMulti asks for the keys as they were at the call, even if the caller changes its array before the flush', async () => {
    await client.set('m1', 'one')
    await client.set('m2', 'two')
    const keys = ['m1', 'm2']
    const pending = client.getMulti(keys)
    keys[0] = 'changed'
    keys.push('added')
    const found = await pending
    assert.deepEqual([...found.keys()].sort(), ['m1', 'm2'])
  })
})

describe('counters', () => {
  test('incr and decr use the full unsigned 64-bit range as bigint', async () => {
    await client.set('counter', '18446744073709551613')
    assert.equal(await client.incr('counter'), 18446744073709551614n)
    assert.equal(await client.incr('counter', 1n), 18446744073709551615n)
    assert.equal(await client.incr('counter'), 0n, 'memcached wraps at 2^64')
    assert.equal(await client.incr('counter', 0xffffffffffffffffn), 0xffffffffffffffffn)
    assert.equal(await client.decr('counter', 5), 0xfffffffffffffffan)
    assert.equal(await client.decr('counter', 0xffffffffffffffffn), 0n, 'decr stops at 0')
    assert.equal(await client.incr('no-counter'), undefined)
    assert.equal(await client.decr('no-counter', 2n), undefined)
    for (const delta of [-1, 1.5, 2n ** 64n, -1n]) await assert.rejects(client.incr('counter', delta), TypeError)
  })

  test('incr on a non-numeric value is a client error, and the connection stays usable', async () => {
    await client.set('not-a-number', 'abc')
    await rejectsWith(client.incr('not-a-number'), 'MC_CLIENT_ERROR')
    assert.equal((await client.get('not-a-number'))?.toString(), 'abc')
  })
})

describe('expiry', () => {
  test('touch and gat change the expiry; a 1 s item is gone after 2 s', async () => {
    await client.set('short', 'x', { ttl: 1 })
    await client.set('touched', 'y', { ttl: 1 })
    await client.set('gat', 'z', { ttl: 1 })
    assert.equal(await client.touch('touched', 100), true)
    assert.equal((await client.gat('gat', 100))?.toString(), 'z')
    assert.equal(await client.touch('missing', 100), false)
    await new Promise((resolve) => setTimeout(resolve, 2100))
    assert.equal(await client.get('short'), undefined)
    assert.equal((await client.get('touched'))?.toString(), 'y')
    assert.equal((await client.get('gat'))?.toString(), 'z')
  })

  test('a TTL over 30 days is sent as an absolute Unix time (else memcached would expire it at once)', async () => {
    const ttl = 31 * 24 * 3600
    const writes = await captureWrites(async () => {
      await client.set('long', 'kept', { ttl })
      await client.touch('long-touched', ttl)
    })
    const line = Buffer.concat(writes).toString('latin1')
    const match = /set long 0 (\d+) 4/.exec(line)
    assert.ok(match !== null, line)
    const sent = Number(match[1])
    const expected = Math.floor(Date.now() / 1000) + ttl
    assert.ok(Math.abs(sent - expected) <= 2, `sent ${sent}, expected about ${expected}`)
    assert.equal((await client.get('long'))?.toString(), 'kept')
    await client.set('long-touched', 'v')
    assert.equal(await client.touch('long-touched', ttl), true)
    assert.equal((await client.get('long-touched'))?.toString(), 'v')
    for (const bad of [-1, 1.5, Number.NaN]) await assert.rejects(client.set('long', 'x', { ttl: bad }), TypeError)
  })
})

describe('bad input never reaches the wire', () => {
  const badKeys = [
    '', 'a b', 'a\r\nflush_all', 'tab\there', 'nul\u0000', 'del\u007f', 'c1\u0085', 'ls\u2028', 'x'.repeat(251),
    'é'.repeat(126), 'lone\ud800surrogate'
  ]

  test('invalid keys reject MC_INVALID_KEY for every command, and nothing is written', async () => {
    await client.set('victim', 'still here')
    const writes = await captureWrites(async () => {
      for (const key of badKeys) {
        await rejectsWith(client.get(key), 'MC_INVALID_KEY')
        await rejectsWith(client.set(key, 'v'), 'MC_INVALID_KEY')
        await rejectsWith(client.delete(key), 'MC_INVALID_KEY')
        await rejectsWith(client.incr(key), 'MC_INVALID_KEY')
        await rejectsWith(client.touch(key, 1), 'MC_INVALID_KEY')
        await rejectsWith(client.getMulti(['ok', key]), 'MC_INVALID_KEY')
      }
      await rejectsWith(client.get(42 as unknown as string), 'MC_INVALID_KEY')
    })
    assert.equal(writes.length, 0, 'no byte may be sent for a bad key')
    assert.equal((await client.get('victim'))?.toString(), 'still here', 'no flush_all got through')
  })

  test('a key checked once is not trusted for another: valid and invalid keys alternating are each judged on their own', async () => {
    const writes = await captureWrites(async () => {
      for (const key of badKeys) {
        assert.equal(await client.touch('alternating', 10), false)
        await rejectsWith(client.touch(key, 1), 'MC_INVALID_KEY')
        await rejectsWith(client.touch(key, 1), 'MC_INVALID_KEY')
        await rejectsWith(client.gets(key), 'MC_INVALID_KEY')
      }
    })
    // The test runner's own IPC goes through sockets too: only commands count.
    const commands = writes.map(String).filter((chunk) => /^(touch|gets|flush_all)\b/.test(chunk))
    assert.equal(commands.length, badKeys.length)
    assert.deepEqual(new Set(commands), new Set(['touch alternating 10\r\n']), 'only the valid key was written')
  })

  test('a new client checks its very first key: every bad key, empty included, rejects MC_INVALID_KEY unsent', async () => {
    for (const key of badKeys) {
      const fresh = new MemcachedClient({ servers: [server.address] })
      try {
        const writes = await captureWrites(async () => { await rejectsWith(fresh.get(key), 'MC_INVALID_KEY') })
        assert.equal(writes.length, 0, `nothing written for ${JSON.stringify(key)}`)
      } finally {
        await fresh.close()
      }
    }
  })

  test('the longest valid keys work: 250 ASCII bytes, 250 bytes of UTF-8', async () => {
    for (const key of ['k'.repeat(250), 'é'.repeat(125), 'clé:✓']) {
      await client.set(key, key)
      assert.equal((await client.get(key))?.toString(), key)
    }
  })

  test('values kept by the caller stay intact while later replies reuse the socket read buffer', async () => {
    // Large values are views of a socket read; small ones are copies. Either
    // way, no later read may write over a value a caller still holds.
    const sizes = [1, 100, 511, 512, 1024, 4000, 70_000]
    for (const size of sizes) await client.set(`kept:${size}`, Buffer.alloc(size, size % 251))
    // 100 values of 1 KiB: reads that fill the buffer, whose values are views.
    const wide = Array.from({ length: 100 }, (_, i) => `kept:wide:${i}`)
    for (const [i, key] of wide.entries()) await client.set(key, Buffer.alloc(1024, i))
    const kept = await Promise.all(sizes.map(async (size) => await client.get(`kept:${size}`)))
    const keptOneByOne: Array<Buffer | undefined> = []
    for (const size of sizes) keptOneByOne.push(await client.get(`kept:${size}`))
    const keptMany = await client.getMulti(sizes.map((size) => `kept:${size}`))
    const keptWide = await client.getMulti(wide)
    await client.set('churn', Buffer.alloc(60_000, 0xee))
    for (let i = 0; i < 50; i++) {
      await client.get('churn')
      await client.get('kept:1024')
      await client.getMulti(['churn', 'kept:100', 'kept:4000'])
      await client.getMulti(wide.slice(i, i + 50))
      await client.set(`churn:${i}`, 'x')
    }
    sizes.forEach((size, i) => {
      assert.ok(kept[i]?.equals(Buffer.alloc(size, size % 251)), `get of ${size} bytes kept intact`)
      assert.ok(keptOneByOne[i]?.equals(Buffer.alloc(size, size % 251)), `sequential get of ${size} bytes kept intact`)
      assert.ok(keptMany.get(`kept:${size}`)?.equals(Buffer.alloc(size, size % 251)), `getMulti of ${size} bytes kept intact`)
    })
    wide.forEach((key, i) => assert.ok(keptWide.get(key)?.equals(Buffer.alloc(1024, i)), `getMulti value ${i} of 100 kept intact`))
  })

  test('a small value does not pin a whole socket read', async () => {
    await client.set('small:pin', 'tiny')
    const value = await client.get('small:pin')
    assert.equal(value?.toString(), 'tiny')
    assert.ok((value?.buffer.byteLength ?? 0) <= Buffer.poolSize, `backed by ${value?.buffer.byteLength} bytes`)
  })

  test('a 1 KiB value read alone is copied out of the read buffer, not a view pinning it', async () => {
    // A view would make the next read allocate a fresh 64 KiB buffer: 64 KiB per get.
    await client.set('kib:pin', Buffer.alloc(1024, 7))
    for (let i = 0; i < 3; i++) {
      const value = await client.get('kib:pin')
      assert.ok(value?.equals(Buffer.alloc(1024, 7)))
      assert.ok((value?.buffer.byteLength ?? Infinity) <= Buffer.poolSize, `backed by ${value?.buffer.byteLength} bytes`)
    }
  })

  test('UTF-8 keys are matched byte for byte in every retrieval, misses among them', async () => {
    // Replies are matched against the sent keys without decoding them: keys
    // that differ only after a multi-byte character must not be confused.
    const keys = ['é'.repeat(125), 'clé:✓', 'clé:✗', 'cle:x', '😀', 'a😀b', 'a😀c']
    const missing = ['clé:?', 'a😀d']
    for (const key of keys) await client.set(key, `value of ${key}`)
    for (const key of missing) await client.delete(key)
    const asked = [...keys, ...missing].sort()
    const found = await client.getMulti(asked)
    assert.deepEqual([...found].map(([key, value]) => [key, value.toString()]).sort(), keys.map((key) => [key, `value of ${key}`]).sort())
    const coalesced = await Promise.all(asked.map(async (key) => (await client.get(key))?.toString()))
    assert.deepEqual(coalesced, asked.map((key) => keys.includes(key) ? `value of ${key}` : undefined))
    const single = new MemcachedClient({ servers: [server.address], coalesceGets: false })
    try {
      for (const key of asked) {
        const expected = keys.includes(key) ? `value of ${key}` : undefined
        assert.equal((await single.get(key))?.toString(), expected, `get ${key}`)
        assert.equal((await single.gets(key))?.value.toString(), expected, `gets ${key}`)
        assert.equal((await single.gat(key, 0))?.toString(), expected, `gat ${key}`)
      }
    } finally {
      await single.close()
    }
  })

  test('methods return rejected promises, never throw synchronously', () => {
    const calls: Array<() => Promise<unknown>> = [
      () => client.get('a b'), () => client.set('k', 5 as unknown as string), () => client.incr('k', -1),
      () => client.cas('k', 'v', 1 as unknown as bigint), () => client.touch('k', -5), () => client.gat('k', Number.NaN),
      () => client.getMulti(['a b'])
    ]
    for (const call of calls) {
      const promise = call()
      assert.ok(promise instanceof Promise)
      promise.catch(() => {})
    }
  })

  test('a value over maxValueSize rejects MC_TOO_LARGE before sending', async () => {
    const small = new MemcachedClient({ servers: [server.address], maxValueSize: 1000 })
    try {
      await small.set('sized', 'ok')
      const writes = await captureWrites(async () => {
        const error = await rejectsWith(small.set('sized', Buffer.alloc(1001)), 'MC_TOO_LARGE')
        assert.equal(error.server, server.address)
        await rejectsWith(small.set('sized', 'é'.repeat(501)), 'MC_TOO_LARGE')
      })
      assert.equal(writes.length, 0)
      assert.equal((await small.get('sized'))?.toString(), 'ok')
    } finally {
      await small.close()
    }
  })

  test('the server\'s "object too large" is MC_TOO_LARGE and the connection stays usable', async () => {
    const big = new MemcachedClient({ servers: [server.address], maxValueSize: 4 * 1024 * 1024 })
    try {
      await big.set('large', 'previous')
      const before = (await big.stats())[server.address]?.total_connections
      const item = await big.gets('large')
      await rejectsWith(big.cas('large', Buffer.alloc(2 * 1024 * 1024, 1), item?.cas ?? 0n), 'MC_TOO_LARGE')
      await rejectsWith(big.add('large-new', Buffer.alloc(2 * 1024 * 1024, 1)), 'MC_TOO_LARGE')
      assert.equal((await big.get('large'))?.toString(), 'previous', 'a refused cas leaves the item intact')
      // memcached itself unlinks the old item when a too-large *set* is refused
      // (process_update_command); the client-side maxValueSize check avoids that.
      await rejectsWith(big.set('large', Buffer.alloc(2 * 1024 * 1024, 1)), 'MC_TOO_LARGE')
      await big.set('after', 'usable')
      assert.equal((await big.get('after'))?.toString(), 'usable')
      assert.equal((await big.stats())[server.address]?.total_connections, before, 'no reconnect was needed')
    } finally {
      await big.close()
    }
  })
})

describe('pipelining', () => {
  test('20,000 concurrent gets over 2,000 keys each resolve with their own value', async () => {
    await Promise.all(Array.from({ length: 2000 }, (_, i) => client.set(`p:${i}`, `value-${i}`)))
    const results = await Promise.all(Array.from({ length: 20_000 }, (_, i) => client.get(`p:${i % 2000}`)))
    results.forEach((value, i) => assert.equal(value?.toString(), `value-${i % 2000}`))
  })

  test('the same without coalescing', async () => {
    const plain = new MemcachedClient({ servers: [server.address], coalesceGets: false, maxQueue: 50_000 })
    try {
      const results = await Promise.all(Array.from({ length: 20_000 }, (_, i) => plain.get(`p:${i % 2000}`)))
      results.forEach((value, i) => assert.equal(value?.toString(), `value-${i % 2000}`))
    } finally {
      await plain.close()
    }
  })

  test('commands of one tick leave in one write; gets of one tick become one multi-key get', async () => {
    await client.version()
    const writes = await captureWrites(async () => {
      await Promise.all([
        ...Array.from({ length: 50 }, (_, i) => client.set(`tick:${i}`, 'x')),
        ...Array.from({ length: 100 }, (_, i) => client.get(`tick:${i % 60}`))
      ])
    })
    assert.equal(writes.length, 1)
    const text = (writes[0] as Buffer).toString('latin1')
    assert.equal(text.match(/^set /gm)?.length, 50)
    assert.equal(text.match(/^get /gm)?.length, 1)
    assert.equal(text.split('\r\n').find((line) => line.startsWith('get '))?.split(' ').length, 61)
  })

  test('a burst larger than the socket buffer waits for drain and loses nothing', async () => {
    const values = Array.from({ length: 48 }, (_, i) => Buffer.alloc(512 * 1024, i))
    await Promise.all(values.map((value, i) => client.set(`burst:${i}`, value)))
    const back = await Promise.all(values.map((_, i) => client.get(`burst:${i}`)))
    back.forEach((value, i) => assert.ok(value?.equals(values[i] as Buffer), `burst:${i}`))
  })

  test('gets of one tick on an idle connection leave in one write as two multi-key gets, halves; each caller has its own value', async () => {
    const keys = Array.from({ length: 9 }, (_, i) => `halves:${i}`)
    await Promise.all(keys.map(async (key) => await client.set(key, `value of ${key}`)))
    // Repeated keys in either half, and a miss in the second.
    const asked = [...keys, 'halves:1', 'halves:7', 'halves:7', 'halves:none']
    let values: Array<Buffer | undefined> = []
    const writes = await captureWrites(async () => {
      values = await Promise.all(asked.map(async (key) => await client.get(key)))
    })
    assert.equal(writes.length, 1)
    const lines = (writes[0] as Buffer).toString('latin1').split('\r\n').filter((line) => line !== '')
    assert.deepEqual(lines, [`get ${keys.slice(0, 5).join(' ')}`, `get ${[...keys.slice(5), 'halves:none'].join(' ')}`])
    assert.deepEqual(values.map((value) => value?.toString()), asked.map((key) => key === 'halves:none' ? undefined : `value of ${key}`))
    const sevens = values.filter((_, i) => asked[i] === 'halves:7') as Buffer[]
    sevens[0]?.fill(0)
    assert.equal(sevens[1]?.toString(), 'value of halves:7', 'callers of one key each get their own buffer')
  })

  test('with at most four callers waiting, gets go key by key (one get per key, in one write); with five they coalesce', async () => {
    await Promise.all(['kbk:a', 'kbk:b', 'kbk:c', 'kbk:d', 'kbk:e'].map(async (key) => await client.set(key, `value of ${key}`)))
    const sent = async (asked: string[]): Promise<{ lines: string[], values: Array<Buffer | undefined> }> => {
      let values: Array<Buffer | undefined> = []
      const writes = await captureWrites(async () => {
        values = await Promise.all(asked.map(async (key) => await client.get(key)))
      })
      assert.equal(writes.length, 1)
      assert.deepEqual(values.map((value) => value?.toString()), asked.map((key) => key === 'kbk:none' ? undefined : `value of ${key}`))
      return { lines: (writes[0] as Buffer).toString('latin1').split('\r\n').filter((line) => line !== ''), values }
    }
    // Four callers, a repeated key and a miss among them.
    const four = await sent(['kbk:a', 'kbk:b', 'kbk:a', 'kbk:none'])
    assert.deepEqual(four.lines, ['get kbk:a', 'get kbk:b', 'get kbk:none'])
    four.values[0]?.fill(0)
    assert.equal(four.values[2]?.toString(), 'value of kbk:a', 'callers of one key each get their own buffer')
    assert.deepEqual((await sent(['kbk:a', 'kbk:b', 'kbk:c', 'kbk:d', 'kbk:e'])).lines, ['get kbk:a kbk:b kbk:c', 'get kbk:d kbk:e'])
  })

  test('past 64 callers, the next gets of those a full read answered leave before the rest of the reply is read', async () => {
    const keys = Array.from({ length: 128 }, (_, i) => `deep:${String(i).padStart(3, '0')}`)
    const value = Buffer.alloc(1024, 'v')
    await Promise.all(keys.map(async (key) => await client.set(key, value)))
    await client.version()
    // Each write of gets, with how much the socket had read by then.
    const writes: Array<{ keys: number, bytesRead: number }> = []
    await watchWrites(async () => await Promise.all(keys.map(async (key) => { await client.get(key); await client.get(`${key}:again`) })), (socket, chunk) => {
      const text = chunk.toString('latin1')
      if (text.startsWith('get ')) writes.push({ keys: text.split(/[ \r\n]+/).length - 2, bytesRead: socket.bytesRead })
    })
    const [first, ...next] = writes
    assert.equal(first?.keys, 128, 'the first round leaves as one get of 128 keys')
    const replyBytes = keys.reduce((sum, key) => sum + `VALUE ${key} 0 1024\r\n`.length + 1024 + 2, 'END\r\n'.length)
    assert.equal(next.reduce((sum, write) => sum + write.keys, 0), 128)
    assert.ok((next[0]?.bytesRead ?? Infinity) < first.bytesRead + replyBytes,
      `the first answered callers' gets left after ${(next[0]?.bytesRead ?? 0) - first.bytesRead} of ${replyBytes} reply bytes`)
  })

  test('a batch of more than 64 keys on an idle connection leaves whole: one multi-key get', async () => {
    const keys = Array.from({ length: 65 }, (_, i) => `whole:${i}`)
    await Promise.all(keys.map(async (key) => await client.set(key, key)))
    let values: Array<Buffer | undefined> = []
    const writes = await captureWrites(async () => {
      values = await Promise.all(keys.map(async (key) => await client.get(key)))
    })
    assert.equal(writes.length, 1)
    assert.deepEqual((writes[0] as Buffer).toString('latin1').split('\r\n').filter((line) => line !== ''), [`get ${keys.join(' ')}`])
    assert.deepEqual(values.map((value) => value?.toString()), keys)
  })

  test('a split batch gives back every caller it counted: maxQueue admits exactly as many commands after it as before', async () => {
    const bounded = new MemcachedClient({ servers: [server.address], maxQueue: 6 })
    try {
      await bounded.set('bounded:a', 'a')
      const tick = async (): Promise<PromiseSettledResult<Buffer | undefined>[]> =>
        await Promise.allSettled(['bounded:a', 'bounded:b', 'bounded:a', 'bounded:c', 'bounded:c', 'bounded:d', 'bounded:e'].map(async (key) => await bounded.get(key)))
      for (let round = 0; round < 3; round++) {
        const settled = await tick()
        assert.deepEqual(settled.map((result) => result.status), ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected'], `round ${round}`)
        const refused = settled[6] as PromiseRejectedResult
        assert.ok(refused.reason instanceof MemcachedError && refused.reason.code === 'MC_QUEUE_FULL')
      }
    } finally {
      await bounded.close()
    }
  })

  test('gets of one tick become multi-key gets, each caller with its own cas', async () => {
    await Promise.all(Array.from({ length: 10 }, (_, i) => client.set(`casbatch:${i}`, `v${i}`)))
    const expected = await Promise.all(Array.from({ length: 10 }, async (_, i) => (await client.getMulti([`casbatch:${i}`])).get(`casbatch:${i}`)))
    let items: Array<Awaited<ReturnType<MemcachedClient['gets']>>> = []
    const writes = await captureWrites(async () => {
      items = await Promise.all([...Array.from({ length: 10 }, (_, i) => client.gets(`casbatch:${i}`)), client.gets('casbatch:none')])
    })
    assert.equal(writes.length, 1)
    // Eleven keys on an idle connection: two halves.
    assert.equal((writes[0] as Buffer).toString('latin1').match(/^gets /gm)?.length, 2)
    assert.equal(items[10], undefined)
    const cases = new Set(items.slice(0, 10).map((item) => item?.cas))
    assert.equal(cases.size, 10, 'each key has its own cas unique')
    items.slice(0, 10).forEach((item, i) => assert.deepEqual(item?.value, expected[i]))
    const first = items[0]
    assert.ok(first !== undefined)
    assert.equal(await client.cas('casbatch:0', 'changed', first.cas), 'stored')
  })

  test('coalescing keeps program order: get, set, get of one key in one tick', async () => {
    await client.set('order', 'old')
    const [first, , second] = await Promise.all([client.get('order'), client.set('order', 'new'), client.get('order')])
    assert.equal(first?.toString(), 'old')
    assert.equal(second?.toString(), 'new')
  })

  test('gets one tick at a time, each batch reused from the last answered one, resolve only their own caller: hits, misses, gets', async () => {
    await Promise.all(Array.from({ length: 8 }, (_, i) => client.set(`seq:${i}`, `value-${i}`)))
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 10; i++) {
        // Keys 8 and 9 miss: a batch reused after a hit must not answer with it, nor the other way round.
        const key = `seq:${(i * 7 + round) % 10}`
        const n = Number(key.slice(4))
        if (i % 3 === 0) assert.equal((await client.gets(key))?.value.toString(), n < 8 ? `value-${n}` : undefined, key)
        else assert.equal((await client.get(key))?.toString(), n < 8 ? `value-${n}` : undefined, key)
      }
      // Two callers a tick apart: one batch in flight while the other is queued, answered in turn.
      const [a, b] = await Promise.all([client.get(`seq:${round % 10}`), Promise.resolve().then(async () => await new Promise<void>((resolve) => setImmediate(resolve))).then(async () => await client.get(`seq:${(round + 1) % 10}`))])
      assert.equal(a?.toString(), round % 10 < 8 ? `value-${round % 10}` : undefined)
      assert.equal(b?.toString(), (round + 1) % 10 < 8 ? `value-${(round + 1) % 10}` : undefined)
    }
  })

  test('closed loops of gets, each batch written while others are in flight, resolve with their own values', async () => {
    // Replies of 2 KiB values arrive over several reads, and batches leave
    // between them while earlier ones, matched against the bytes they were
    // sent as, are still being answered.
    const valueOf = (i: number): string => `value-${i}-`.padEnd(2048, String.fromCharCode(97 + i % 26))
    await Promise.all(Array.from({ length: 256 }, (_, i) => client.set(`loop:${i}`, valueOf(i))))
    await Promise.all(Array.from({ length: 128 }, async (_, loop) => {
      for (let n = 0; n < 50; n++) {
        const i = (loop * 31 + n) % 256
        assert.equal((await client.get(`loop:${i}`))?.toString(), valueOf(i))
      }
    }))
  })

  test('requests of every length, flushed one tick at a time, reach the server as sent', async () => {
    // Each flush of an idle socket writes from the start of one scratch buffer, through a view kept per length.
    const lengths = Array.from({ length: 36 }, (_, i) => 1 + i * 7)
    for (const length of lengths) {
      const key = 'r'.repeat(length)
      await client.set(key, `v${length}`)
      assert.equal((await client.get(key))?.toString(), `v${length}`, `key of ${length} bytes`)
    }
    for (const length of lengths.reverse()) assert.equal((await client.get('r'.repeat(length)))?.toString(), `v${length}`, `key of ${length} bytes`)
  })

  test('callers of the same key in one batch get separate buffers', async () => {
    await client.set('shared', 'abc')
    const [a, b] = await Promise.all([client.get('shared'), client.get('shared')])
    assert.ok(a !== undefined && b !== undefined)
    a[0] = 0x7a
    assert.equal(b.toString(), 'abc')
  })

  test('a key asked by several callers of one batch is sent once, and each caller gets it', async () => {
    const asked = ['dup:a', 'dup:hot', 'dup:b', 'dup:hot', 'dup:c', 'dup:a', 'dup:hot', 'dup:d', 'dup:missing', 'dup:missing']
    await Promise.all([...new Set(asked)].filter((key) => key !== 'dup:missing').map(async (key) => await client.set(key, `v:${key}`)))
    let got: Array<Buffer | undefined> = []
    const writes = await captureWrites(async () => { got = await Promise.all(asked.map(async (key) => await client.get(key))) })
    const sent = writes.map((chunk) => chunk.toString('latin1')).join('').split('\r\n')
      .filter((line) => line.startsWith('get ')).flatMap((line) => line.slice(4).split(' '))
    assert.deepEqual(sent.toSorted(), [...new Set(asked)].toSorted(), 'each key once on the wire')
    assert.deepEqual(got.map((value) => value?.toString()), asked.map((key) => key === 'dup:missing' ? undefined : `v:${key}`))
  })
})

describe('several servers', () => {
  test('getMulti sends one multi-key get per server, in parallel', async () => {
    const pair = new MemcachedClient({ servers: [server.address, other.address] })
    try {
      const keys = Array.from({ length: 40 }, (_, i) => `multi:${i}`)
      await Promise.all(keys.map((key) => pair.set(key, `v:${key}`)))
      const owners = new Set(keys.map((key) => pair.serversFor(key, 1)[0]))
      assert.equal(owners.size, 2, 'the keys spread over both servers')
      const writes = await captureWrites(async () => {
        const found = await pair.getMulti(keys)
        assert.equal(found.size, keys.length)
        for (const key of keys) assert.equal(found.get(key)?.toString(), `v:${key}`)
      })
      const gets = writes.map((chunk) => chunk.toString('latin1')).filter((text) => text.startsWith('get '))
      assert.equal(gets.length, 2)
    } finally {
      await pair.close()
    }
  })

  test('forServer pins every command to one server; ping reports each server', async () => {
    const pair = new MemcachedClient({ servers: [server.address, other.address] })
    try {
      const onOther = pair.forServer(other.address)
      await onOther.set('pinned', 'there')
      const direct = new MemcachedClient({ servers: [other.address] })
      assert.equal((await direct.get('pinned'))?.toString(), 'there')
      await direct.close()
      assert.equal((await pair.forServer(server.address).get('pinned')), undefined)
      assert.throws(() => pair.forServer('127.0.0.1:1'), /not one of this client's servers/)
      const health = await pair.ping()
      assert.deepEqual(Object.keys(health).sort(), [server.address, other.address].sort())
      for (const entry of Object.values(health)) {
        assert.equal(entry.ok, true)
        assert.equal(entry.ejected, false)
        assert.ok(entry.latencyMs >= 0)
      }
      const dead = new MemcachedClient({ servers: ['127.0.0.1:1'], connectTimeout: 200 })
      const down = (await dead.ping())['127.0.0.1:1']
      assert.equal(down?.ok, false)
      assert.match(down?.error ?? '', /ECONNREFUSED/)
      await dead.close()
    } finally {
      await pair.close()
    }
  })

  test('version, stats and flush reach every server', async () => {
    const pair = new MemcachedClient({ servers: [server.address, other.address] })
    try {
      const versions = await pair.version()
      assert.deepEqual(Object.keys(versions).sort(), [server.address, other.address].sort())
      for (const version of Object.values(versions)) assert.match(version, /^\d+\.\d+\.\d+$/)
      const stats = await pair.stats()
      assert.equal(stats[server.address]?.pid, String(server.pid))
      assert.equal(stats[other.address]?.pid, String(other.pid))
      await pair.set('flushed', 'x')
      await pair.flush()
      assert.equal(await pair.get('flushed'), undefined)
    } finally {
      await pair.close()
    }
  })
})

test('constructor options are validated', () => {
  assert.throws(() => new MemcachedClient({ servers: [] }), /servers must be a non-empty array/)
  assert.throws(() => new MemcachedClient({ servers: ['host:99999'] }), /port/)
  assert.throws(() => new MemcachedClient({ timeout: 0 }), /timeout must be a positive integer/)
  assert.throws(() => new MemcachedClient({ servers: ['a:1', 'a:1'] }), /listed twice/)
})
