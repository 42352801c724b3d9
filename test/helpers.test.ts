// Self-tests of the test helpers, with real memcached and a raw socket: the
// fault and TLS tests of the client are only as good as the proxy and the
// certificate they stand on.
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { access } from 'node:fs/promises'
import net from 'node:net'
import { after, afterEach, before, describe, test } from 'node:test'
import tls from 'node:tls'
import { MemcachedServer } from './helpers/memcached.js'
import { FaultProxy } from './helpers/proxy.js'
import { makeSelfSignedCert, type SelfSignedCert } from './helpers/tls.js'

const SET_GET = 'set a 0 0 1\r\nx\r\nget a\r\n'
const SET_GET_REPLY = 'STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n'
// Generous: only how long a broken helper takes to fail, never a speed check.
const PATIENCE = 5000

/** A raw client socket that records everything it receives and how it ended. */
class Raw {
  readonly chunks: Buffer[] = []
  error: NodeJS.ErrnoException | undefined
  closed = false

  constructor (readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => { this.chunks.push(chunk) })
    socket.on('error', (error: NodeJS.ErrnoException) => { this.error = error })
    socket.on('close', () => { this.closed = true })
  }

  get received (): Buffer { return Buffer.concat(this.chunks) }
  get text (): string { return this.received.toString('latin1') }

  /** Waits until `done()` holds; fails with what was received if it never does. */
  async until (done: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + PATIENCE
    while (!done()) {
      if (Date.now() > deadline) {
        assert.fail(`timed out waiting for ${what}; received ${JSON.stringify(this.text)}, closed=${this.closed}, error=${this.error?.code}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 2))
    }
  }

  async reply (expected: string): Promise<void> {
    await this.until(() => this.received.length >= expected.length || this.closed, JSON.stringify(expected))
    assert.equal(this.text, expected)
  }
}

const sockets = new Set<net.Socket>()
afterEach(() => {
  for (const socket of sockets) socket.destroy()
  sockets.clear()
})

function track<S extends net.Socket> (socket: S): S {
  sockets.add(socket)
  return socket
}

async function connect (port: number): Promise<Raw> {
  const raw = new Raw(track(net.connect({ host: '127.0.0.1', port })))
  await once(raw.socket, 'connect')
  return raw
}

/** Resolves with the error a connect attempt fails with, or rejects if it connects. */
async function connectError (port: number): Promise<NodeJS.ErrnoException> {
  const socket = track(net.connect({ host: '127.0.0.1', port }))
  return await new Promise((resolve, reject) => {
    socket.once('connect', () => { reject(new Error(`connected to ${port}, expected a refusal`)) })
    socket.once('error', resolve)
  })
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

describe('FaultProxy', () => {
  let memcached: MemcachedServer
  let proxy: FaultProxy

  before(async () => {
    memcached = await MemcachedServer.start()
  })
  after(async () => {
    await memcached.stop()
  })
  // A fresh proxy per test, so one test's mode never leaks into the next.
  afterEach(async () => {
    await proxy.close()
  })

  async function startProxy (): Promise<FaultProxy> {
    proxy = await FaultProxy.start({ host: memcached.host, port: memcached.port })
    return proxy
  }

  test('pass forwards both ways untouched and counts', async () => {
    await startProxy()
    assert.equal(proxy.address, `127.0.0.1:${proxy.port}`)
    assert.notEqual(proxy.port, memcached.port)
    const raw = await connect(proxy.port)
    raw.socket.write(SET_GET)
    await raw.reply(SET_GET_REPLY)
    assert.equal(proxy.connections, 1)
    assert.equal(proxy.bytesFromClient, SET_GET.length)
    assert.equal(proxy.bytesFromServer, SET_GET_REPLY.length)
  })

  test('split delivers the same bytes in many small pieces', async () => {
    await startProxy()
    const value = 'v'.repeat(300)
    const expected = `STORED\r\nVALUE long 0 ${value.length}\r\n${value}\r\nEND\r\n`
    proxy.split(7, 1234)
    const raw = await connect(proxy.port)
    raw.socket.write(`set long 0 0 ${value.length}\r\n${value}\r\nget long\r\n`)
    await raw.reply(expected)
    // About 85 pieces of 1..7 bytes; even if a few coalesce in the kernel,
    // far more than one read must have happened.
    assert.ok(raw.chunks.length > 20, `only ${raw.chunks.length} chunks`)
  })

  test('delay holds each reply at least the delay, in order across a mode switch', async () => {
    await startProxy()
    const raw = await connect(proxy.port)
    raw.socket.write('set a 0 0 1\r\nx\r\n')
    await raw.reply('STORED\r\n')
    raw.chunks.length = 0
    proxy.delay(150)
    const started = Date.now()
    raw.socket.write('get a\r\n')
    await raw.until(() => raw.text.length > 0, 'the delayed reply')
    assert.ok(Date.now() - started >= 150, `reply after ${Date.now() - started} ms`)
    assert.equal(raw.text, 'VALUE a 0 1\r\nx\r\nEND\r\n')

    raw.chunks.length = 0
    const before = proxy.bytesFromServer
    raw.socket.write('get a\r\n')
    await raw.until(() => proxy.bytesFromServer > before, 'memcached to answer the proxy')
    proxy.pass()
    raw.socket.write('version\r\n')
    await raw.until(() => raw.text.endsWith('\r\n') && raw.text.includes('VERSION'), 'both replies')
    assert.match(raw.text, /^VALUE a 0 1\r\nx\r\nEND\r\nVERSION \S+\r\n$/)
  })

  test('blackhole swallows requests on new and existing connections', async () => {
    await startProxy()
    const existing = await connect(proxy.port)
    existing.socket.write(SET_GET)
    await existing.reply(SET_GET_REPLY)
    existing.chunks.length = 0
    const replied = proxy.bytesFromServer
    proxy.blackhole()
    const fresh = await connect(proxy.port)
    fresh.socket.write('version\r\n')
    existing.socket.write('version\r\n')
    await sleep(200)
    assert.equal(fresh.text, '')
    assert.equal(existing.text, '')
    assert.equal(fresh.closed || existing.closed, false)
    assert.equal(proxy.connections, 2)
    // Not even memcached saw the requests.
    assert.equal(proxy.bytesFromServer, replied)
  })

  test('blackhole swallows a reply held by a delay', async () => {
    await startProxy()
    proxy.delay(100)
    const raw = await connect(proxy.port)
    raw.socket.write('version\r\n')
    await raw.until(() => proxy.bytesFromServer > 0, 'memcached to answer the proxy')
    proxy.blackhole()
    await sleep(250)
    assert.equal(raw.text, '')
  })

  test('garbage answers any request with the given bytes', async () => {
    await startProxy()
    proxy.garbage(Buffer.from('NONSENSE 42\r\n'))
    const raw = await connect(proxy.port)
    raw.socket.write('get a\r\n')
    await raw.reply('NONSENSE 42\r\n')
    assert.equal(proxy.bytesFromServer, 0)
  })

  test('resetAfter(10) cuts a long VALUE reply with a reset', async () => {
    await startProxy()
    const value = 'z'.repeat(1000)
    const setter = await connect(proxy.port)
    setter.socket.write(`set big 0 0 ${value.length}\r\n${value}\r\n`)
    await setter.reply('STORED\r\n')
    const full = `VALUE big 0 ${value.length}\r\n${value}\r\nEND\r\n`

    proxy.resetAfter(10)
    const raw = await connect(proxy.port)
    raw.socket.write('get big\r\n')
    await raw.until(() => raw.closed, 'the connection to be cut')
    // ECONNRESET if the client read the 10 bytes before the reset arrived,
    // a plain close after them if not (see RESET_GRACE_MS in the proxy).
    assert.ok(raw.error === undefined || raw.error.code === 'ECONNRESET', `error ${raw.error?.code}`)
    assert.equal(raw.text, full.slice(0, 10))
  })

  test('refuse gives ECONNREFUSED, accept listens again on the same port', async () => {
    await startProxy()
    const port = proxy.port
    const open = await connect(port)
    proxy.refuse()
    const error = await connectError(port)
    assert.equal(error.code, 'ECONNREFUSED')
    // Refusing new connections does not touch the open ones.
    open.socket.write(SET_GET)
    await open.reply(SET_GET_REPLY)

    await proxy.accept()
    assert.equal(proxy.port, port)
    const raw = await connect(port)
    raw.socket.write(SET_GET)
    await raw.reply(SET_GET_REPLY)
    assert.equal(proxy.connections, 2)
  })

  test('resetAll resets every open connection', async () => {
    await startProxy()
    const first = await connect(proxy.port)
    const second = await connect(proxy.port)
    second.socket.write(SET_GET)
    await second.reply(SET_GET_REPLY)
    proxy.resetAll()
    await first.until(() => first.closed, 'the first connection to close')
    await second.until(() => second.closed, 'the second connection to close')
    assert.equal(first.error?.code, 'ECONNRESET')
    assert.equal(second.error?.code, 'ECONNRESET')
  })

  test('close ends open connections, even ones in a pending delay', async () => {
    await startProxy()
    proxy.delay(60_000)
    const raw = await connect(proxy.port)
    raw.socket.write('version\r\n')
    await raw.until(() => proxy.bytesFromServer > 0, 'memcached to answer the proxy')
    await proxy.close()
    await raw.until(() => raw.closed, 'the connection to close')
    assert.equal(raw.text, '')
    await assert.rejects(connect(proxy.port), { code: 'ECONNREFUSED' })
  })
})

describe('makeSelfSignedCert with memcached -Z', () => {
  let cert: SelfSignedCert
  let memcached: MemcachedServer

  before(async () => {
    cert = await makeSelfSignedCert()
    memcached = await MemcachedServer.start({ tls: { cert: cert.cert, key: cert.key } })
  })
  after(async () => {
    await memcached?.stop()
    await cert?.cleanup()
  })

  async function tlsVersion (port: number): Promise<string> {
    const socket = track(tls.connect({ host: '127.0.0.1', port, ca: cert.certPem, servername: 'localhost' }))
    await once(socket, 'secureConnect')
    const raw = new Raw(socket)
    socket.write('version\r\n')
    await raw.until(() => raw.text.endsWith('\r\n') || raw.closed, 'a VERSION line')
    return raw.text
  }

  test('writes a PEM certificate and key', () => {
    assert.match(cert.certPem.toString(), /^-----BEGIN CERTIFICATE-----/)
    const x509 = new X509Certificate(cert.certPem)
    assert.match(x509.subjectAltName ?? '', /IP Address:127\.0\.0\.1/)
    assert.match(x509.subjectAltName ?? '', /DNS:localhost/)
  })

  test('cleanup removes the directory', async () => {
    const other = await makeSelfSignedCert()
    assert.notEqual(other.dir, cert.dir)
    await access(other.key)
    await other.cleanup()
    await assert.rejects(access(other.dir), { code: 'ENOENT' })
  })

  test('memcached answers version over verified TLS', async () => {
    assert.match(await tlsVersion(memcached.port), /^VERSION \S+\r\n$/)
  })

  test('a plain TCP client gets no VERSION from TLS memcached', async () => {
    const raw = await connect(memcached.port)
    raw.socket.write('version\r\n')
    // memcached 1.6 takes the bytes for a broken ClientHello and drops the
    // connection (a reset, as they are unread), without a byte of reply.
    await raw.until(() => raw.closed, 'TLS memcached to drop the plain connection')
    assert.doesNotMatch(raw.text, /VERSION/)
  })

  test('TLS passes through the proxy untouched', async () => {
    const proxy = await FaultProxy.start({ host: memcached.host, port: memcached.port })
    try {
      assert.match(await tlsVersion(proxy.port), /^VERSION \S+\r\n$/)
    } finally {
      await proxy.close()
    }
  })
})
