// MemcachedClient over TLS against memcached -Z with a throwaway self-signed
// certificate: round trips, a large value, pipelining; a certificate the
// client does not trust or a wrong name fails with MC_CONNECTION and the TLS
// error as cause; a plain client to the TLS port fails within its timeout.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { MemcachedClient, type MemcachedClientOptions } from '../../src/protocol/client.js'
import { MemcachedError, type MemcachedErrorCode } from '../../src/protocol/errors.js'
import { MemcachedServer } from '../helpers/memcached.js'
import { makeSelfSignedCert, type SelfSignedCert } from '../helpers/tls.js'

const unhandled: unknown[] = []
process.on('unhandledRejection', (reason) => { unhandled.push(reason) })

const TIMEOUT = 500
/** Slack on top of a timeout for a loaded machine; never a speed requirement. */
const MARGIN = 1000
const TEST = { timeout: 20_000 }

let cert: SelfSignedCert
let server: MemcachedServer
let client: MemcachedClient
const clients: MemcachedClient[] = []

function newClient (options: MemcachedClientOptions): MemcachedClient {
  const created = new MemcachedClient({ servers: [server.address], timeout: TIMEOUT, connectTimeout: TIMEOUT, retryDelay: 200, ...options })
  clients.push(created)
  return created
}

before(async () => {
  cert = await makeSelfSignedCert()
  server = await MemcachedServer.start({ tls: { cert: cert.cert, key: cert.key } })
  client = newClient({ tls: { ca: cert.certPem, servername: 'localhost' } })
})

after(async () => {
  await Promise.all(clients.map(async (created) => { await created.close() }))
  await server?.stop()
  await cert?.cleanup()
})

/** Calls at once and returns how it rejected and after how long; fails if it resolves. */
async function rejection (call: () => Promise<unknown>, codes: readonly MemcachedErrorCode[], what: string): Promise<{ error: MemcachedError, ms: number }> {
  const start = performance.now()
  const outcome = await call().then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }))
  const ms = performance.now() - start
  assert.ok(!outcome.ok, `${what}: expected ${codes.join(' or ')}, but it resolved`)
  assert.ok(outcome.error instanceof MemcachedError, `${what}: expected a MemcachedError, got ${String(outcome.error)}`)
  assert.ok(codes.includes(outcome.error.code), `${what}: expected ${codes.join(' or ')}, got ${outcome.error.code} (${outcome.error.message})`)
  assert.ok(ms <= TIMEOUT + MARGIN, `${what}: settled after ${ms.toFixed(0)} ms`)
  return { error: outcome.error, ms }
}

/** The TLS error a MemcachedError wraps, with its code. */
function tlsCause (error: MemcachedError): NodeJS.ErrnoException {
  assert.ok(error.cause instanceof Error, `${error.message}: the TLS error is the cause`)
  return error.cause as NodeJS.ErrnoException
}

describe('verified TLS', () => {
  test('set, get, getMulti, gets, incr, delete, stats and version round-trip', TEST, async () => {
    await client.set('tls:a', 'alpha', { flags: 7 })
    await client.set('tls:b', Buffer.from([0, 1, 2, 13, 10, 255]))
    assert.equal((await client.get('tls:a'))?.toString(), 'alpha')
    assert.deepEqual(await client.get('tls:b'), Buffer.from([0, 1, 2, 13, 10, 255]))
    assert.equal(await client.get('tls:missing'), undefined)

    const multi = await client.getMulti(['tls:a', 'tls:b', 'tls:missing'])
    assert.deepEqual([...multi.keys()].sort(), ['tls:a', 'tls:b'])
    assert.equal(multi.get('tls:a')?.toString(), 'alpha')

    const item = await client.gets('tls:a')
    assert.equal(item?.flags, 7)
    assert.equal(await client.cas('tls:a', 'beta', item?.cas ?? 0n), 'stored')
    assert.equal((await client.get('tls:a'))?.toString(), 'beta')

    await client.set('tls:n', '41')
    assert.equal(await client.incr('tls:n'), 42n)
    assert.equal(await client.delete('tls:n'), true)
    assert.equal(await client.delete('tls:n'), false)

    const stats = await client.stats()
    assert.ok(Number(stats[server.address]?.pid) > 0, 'stats has the pid')
    assert.ok(Number(stats[server.address]?.curr_connections) >= 1)
    const version = await client.version()
    assert.match(version[server.address] ?? '', /^\d+\.\d+\.\d+/)
  })

  test('a 200 KiB value comes back byte-exact, alone and among pipelined commands', TEST, async () => {
    const big = randomBytes(200 * 1024)
    await client.set('tls:big', big)
    assert.ok((await client.get('tls:big'))?.equals(big), 'alone')

    // Many commands in flight on the one TLS connection, the big value in the middle.
    const small = Array.from({ length: 200 }, (_, i) => `value ${i}`)
    await Promise.all(small.map(async (value, i) => { await client.set(`tls:k${i}`, value) }))
    const [singles, bigAgain, multi] = await Promise.all([
      Promise.all(small.map(async (_, i) => (await client.get(`tls:k${i}`))?.toString())),
      client.get('tls:big'),
      client.getMulti(small.map((_, i) => `tls:k${i}`))
    ])
    assert.deepEqual(singles, small)
    assert.ok(bigAgain?.equals(big), 'among pipelined commands')
    assert.deepEqual(small.map((_, i) => multi.get(`tls:k${i}`)?.toString()), small)
  })

  test('reconnects over TLS after the server restarts', TEST, async () => {
    const own = newClient({ tls: { ca: cert.certPem, servername: 'localhost' } })
    await own.set('tls:restart', 'before')
    await server.restart()
    const start = performance.now()
    for (;;) {
      const ok = await own.set('tls:restart', 'after').then(() => true, (error: unknown) => {
        assert.ok(error instanceof MemcachedError, String(error))
        assert.ok(['MC_CONNECTION', 'MC_TIMEOUT', 'MC_NO_SERVERS'].includes(error.code), `${error.code}: ${error.message}`)
        return false
      })
      if (ok) break
      assert.ok(performance.now() - start < 200 + 2000, 'working again within retryDelay + 2 s')
      await sleep(20)
    }
    assert.equal((await own.get('tls:restart'))?.toString(), 'after')
  })
})

describe('TLS failures', () => {
  test('a client that does not trust the certificate rejects MC_CONNECTION with the TLS error as cause', TEST, async () => {
    const untrusting = newClient({ tls: { servername: 'localhost' } })
    const { error } = await rejection(async () => await untrusting.get('tls:a'), ['MC_CONNECTION'], 'get without the CA')
    assert.equal(error.server, server.address)
    assert.match(tlsCause(error).code ?? '', /SELF_SIGNED|UNABLE_TO_VERIFY|CERT/, tlsCause(error).message)
    // Nothing was stored through a connection that never came up.
    const other = newClient({ tls: { servername: 'localhost' } })
    await rejection(async () => { await other.set('tls:untrusted', 'x') }, ['MC_CONNECTION'], 'set without the CA')
    assert.equal(await client.get('tls:untrusted'), undefined)
  })

  test('a certificate for another name rejects MC_CONNECTION with the TLS error as cause', TEST, async () => {
    const misnamed = newClient({ tls: { ca: cert.certPem, servername: 'memcached.example.com' } })
    const { error } = await rejection(async () => await misnamed.get('tls:a'), ['MC_CONNECTION'], 'get with the wrong name')
    assert.equal(tlsCause(error).code, 'ERR_TLS_CERT_ALTNAME_INVALID', tlsCause(error).message)
  })

  test('TLS options that tls.connect refuses at once reject every command MC_CONNECTION with that error as cause, never throwing synchronously', TEST, async () => {
    // tls.connect throws these synchronously; once that escaped as a bare
    // TypeError and left the connection "connecting" for good.
    const unusable = newClient({ tls: { minVersion: 'TLSv9' as 'TLSv1.3' } })
    let get: Promise<unknown> | undefined
    assert.doesNotThrow(() => { get = unusable.get('tls:a') })
    const { error } = await rejection(async () => await get, ['MC_CONNECTION'], 'get with unusable TLS options')
    assert.equal(tlsCause(error).code, 'ERR_TLS_INVALID_PROTOCOL_VERSION', tlsCause(error).message)
    // Later commands fail fast as well, instead of waiting for a connect that never began.
    await rejection(async () => { await unusable.set('tls:b', 'x') }, ['MC_CONNECTION', 'MC_NO_SERVERS'], 'set with unusable TLS options')
  })

  test('a plain client to the TLS port rejects MC_TIMEOUT or MC_CONNECTION within its timeout, and does not hang', TEST, async () => {
    const plain = newClient({})
    await rejection(async () => await plain.get('tls:a'), ['MC_TIMEOUT', 'MC_CONNECTION'], 'a plain get')
    await rejection(async () => { await plain.set('tls:plain', 'x') }, ['MC_TIMEOUT', 'MC_CONNECTION', 'MC_NO_SERVERS'], 'a plain set')
    await rejection(async () => await plain.version(), ['MC_TIMEOUT', 'MC_CONNECTION', 'MC_NO_SERVERS'], 'a plain version')
  })
})

test('no unhandled rejection anywhere in this file', async () => {
  await sleep(50)
  assert.deepEqual(unhandled.map((reason) => String(reason)), [])
})
