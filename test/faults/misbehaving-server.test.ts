// A memcached that misbehaves behind the fault proxy, seen through the
// plugin: too slow, reset in the middle of a VALUE, answering garbage,
// accepting and never answering, refusing. With one copy each gives a 503
// with code SESSION_STORE_UNAVAILABLE and the client's code (in the body and
// the log), within the client timeout plus 500 ms, leaves sessionless
// requests alone, and the sessions work again, intact, within retryDelay plus
// one second of the server behaving. With replicas: 2 the same faults on one
// replica fail no request at all.
import { after, before, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { MemcachedClient } from '../../src/index.js'
import { MemcachedServer } from '../helpers/memcached.js'
import { FaultProxy } from '../helpers/proxy.js'
import { buildApp, cookieOf, idOf, keyOf, setCookieOf, sleep } from '../plugin/helpers.js'
import { LogRecorder } from './load.js'

const TIMEOUT = 400
const RETRY_DELAY = 300
const FAILURES = 2

const unhandled: unknown[] = []
process.on('unhandledRejection', (reason) => { unhandled.push(reason) })

let servers: MemcachedServer[]
let observer: MemcachedClient

before(async () => {
  servers = await Promise.all([MemcachedServer.start(), MemcachedServer.start(), MemcachedServer.start()])
  observer = new MemcachedClient({ servers: [servers[0]?.address ?? ''] })
})

after(async () => {
  await observer.close()
  await Promise.all(servers.map(async (server) => await server.stop()))
  assert.deepEqual(unhandled, [], 'no unhandled rejection in the whole file')
})

interface Fault {
  name: string
  /** The client's code the first failing request reports. */
  code: string
  inject: (proxy: FaultProxy, key: string) => Promise<void>
  heal: (proxy: FaultProxy) => Promise<void>
}

/** Bytes of the `gets` reply for `key` up to the middle of its data block. */
async function middleOfValue (key: string): Promise<number> {
  const item = await observer.gets(key)
  assert.ok(item !== undefined)
  const header = `VALUE ${key} ${item.flags} ${item.value.length} ${item.cas}\r\n`
  return Buffer.byteLength(header) + Math.floor(item.value.length / 2)
}

const pass = async (proxy: FaultProxy): Promise<void> => { proxy.pass() }
const FAULTS: Fault[] = [
  { name: 'replies delayed past the timeout', code: 'MC_TIMEOUT', inject: async (proxy) => { proxy.delay(TIMEOUT + 300) }, heal: pass },
  { name: 'connection reset in the middle of a VALUE', code: 'MC_CONNECTION', inject: async (proxy, key) => { proxy.resetAfter(await middleOfValue(key)) }, heal: pass },
  { name: 'garbage instead of replies', code: 'MC_PROTOCOL', inject: async (proxy) => { proxy.garbage(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')) }, heal: pass },
  { name: 'accepts and never answers', code: 'MC_TIMEOUT', inject: async (proxy) => { proxy.blackhole() }, heal: pass },
  {
    name: 'connection refused',
    code: 'MC_CONNECTION',
    inject: async (proxy) => { proxy.refuse(); proxy.resetAll() },
    heal: async (proxy) => { await proxy.accept() }
  }
]

async function setup (t: TestContext, addresses: string[], replicas: number): Promise<{ app: FastifyInstance, client: MemcachedClient, logs: LogRecorder }> {
  const logs = new LogRecorder()
  const client = new MemcachedClient({ servers: addresses, timeout: TIMEOUT, connectTimeout: TIMEOUT, retryDelay: RETRY_DELAY, failures: FAILURES })
  const app = await buildApp({ client, replicas }, { logger: { level: 'debug', stream: logs } })
  t.after(async () => {
    await app.close()
    await client.close()
  })
  return { app, client, logs }
}

async function timed<T> (work: () => Promise<T>): Promise<{ value: T, ms: number }> {
  const started = performance.now()
  const value = await work()
  return { value, ms: performance.now() - started }
}

for (const fault of FAULTS) {
  test(`one copy, ${fault.name}: 503 ${fault.code} fast, sessionless requests unaffected, recovery with the data intact`, async (t) => {
    const proxy = await FaultProxy.start({ host: servers[0]?.host ?? '', port: servers[0]?.port ?? 0 })
    t.after(() => proxy.close())
    const { app, logs } = await setup(t, [proxy.address], 1)
    const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))

    await fault.inject(proxy, keyOf(idOf(cookie)))
    for (let i = 0; i < FAILURES + 1; i++) {
      if (i > 0) await sleep(RETRY_DELAY / 2)
      const { value: response, ms } = await timed(async () => await app.inject({ method: 'POST', url: '/count', cookies: { sid: cookie } }))
      assert.ok(ms < TIMEOUT + 500, `answered in ${Math.round(ms)} ms`)
      assert.equal(response.statusCode, 503)
      const body = response.json<{ code: string, message: string }>()
      assert.equal(body.code, 'SESSION_STORE_UNAVAILABLE')
      // The client's code and the server stay in the log.
      assert.match(body.message, /^fastify-memcached-session: session store unavailable, could not (load|save) the session$/)
      assert.ok(!response.body.includes('MC_') && !response.body.includes(proxy.address), response.body)
      assert.equal(setCookieOf(response), undefined)
    }
    const logged = logs.atLeast(50).filter((entry) => entry.session !== undefined)
    const codes = logged.map((entry) => entry.err?.code ?? '')
    assert.equal(codes.length, FAILURES + 1, 'each failure logged once by the plugin')
    assert.equal(codes[0], fault.code, 'the first failure names the fault')
    // Later ones: the fault again (a timeout starts no backoff), the client's reconnect backoff, then the ejection.
    for (const code of codes) assert.ok([fault.code, 'MC_CONNECTION', 'MC_NO_SERVERS'].includes(code), code)
    const sessionless = await app.inject({ url: '/peek' })
    assert.equal(sessionless.statusCode, 200, 'a request without a session cookie is not affected')

    assert.ok(logged.every((entry) => entry.level === 50 && /session store unavailable/.test(entry.msg)))
    assert.deepEqual(logs.atLeast(60), [])

    await fault.heal(proxy)
    const healed = performance.now()
    let response = await app.inject({ method: 'POST', url: '/count', cookies: { sid: cookie } })
    while (response.statusCode !== 200 && performance.now() - healed < RETRY_DELAY + 1000) {
      await sleep(20)
      response = await app.inject({ method: 'POST', url: '/count', cookies: { sid: cookie } })
    }
    const recovery = performance.now() - healed
    t.diagnostic(`codes ${codes.join(' ')}; recovered in ${Math.round(recovery)} ms`)
    assert.equal(response.statusCode, 200, `recovered within retryDelay + 1 s (${Math.round(recovery)} ms)`)
    assert.deepEqual(response.json(), { views: 2 }, 'the session survived the fault')
  })
}

for (const fault of FAULTS) {
  test(`replicas 2, ${fault.name} on one replica: no request fails, none waits past the timeout, nothing logged as an error`, async (t) => {
    const proxy = await FaultProxy.start({ host: servers[0]?.host ?? '', port: servers[0]?.port ?? 0 })
    t.after(() => proxy.close())
    const { app, client, logs } = await setup(t, [proxy.address, servers[1]?.address ?? '', servers[2]?.address ?? ''], 2)
    // Sessions with a copy behind the proxy, one with its primary there.
    const cookies: string[] = []
    while (cookies.length < 6 || !cookies.some((cookie) => client.serversFor(keyOf(idOf(cookie)), 2)[0] === proxy.address)) {
      const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))
      if (client.serversFor(keyOf(idOf(cookie)), 2).includes(proxy.address)) cookies.push(cookie)
    }
    await fault.inject(proxy, keyOf(idOf(cookies[0] as string)))
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(cookies.map(async (cookie) =>
        await timed(async () => await app.inject({ method: 'POST', url: '/count', cookies: { sid: cookie } }))))
      for (const { value: response, ms } of results) {
        assert.equal(response.statusCode, 200, response.body)
        assert.ok(ms < TIMEOUT + 500, `answered in ${Math.round(ms)} ms`)
        assert.deepEqual(response.json(), { views: round + 2 }, 'no write lost')
        assert.equal(setCookieOf(response), undefined, 'the same session carried on')
      }
    }
    assert.deepEqual(logs.atLeast(50), [])
    await fault.heal(proxy)
  })
}
