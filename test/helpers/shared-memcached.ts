// The fixture most suites open with: one memcached process and a client on
// it, shared by every test of a file. Here rather than in
// test/plugin/helpers.ts because test/protocol, like src/protocol, imports
// nothing from the plugin; the plugin helpers re-export it. Apart from
// memcached.ts so that the bench, which starts memcached too, does not load
// node:test.
import { after, before } from 'node:test'
import { MemcachedClient, type MemcachedClientOptions } from '../../src/protocol/client.js'
import { MemcachedServer } from './memcached.js'

/** One memcached process and a client on it. */
export interface MemcachedFixture {
  /** The process; valid once the file's `before` hooks ran. */
  readonly server: MemcachedServer
  /** A client on {@link MemcachedFixture.server}; valid once the file's `before` hooks ran. */
  readonly client: MemcachedClient
}

/**
 * Starts one memcached and a client on it before the file's tests, closes the
 * client and stops the process after them. Call it at the top level of a test
 * file; read `server` and `client` inside tests and hooks.
 */
export function useMemcached (clientOptions: Omit<MemcachedClientOptions, 'servers'> = {}): MemcachedFixture {
  let server: MemcachedServer | undefined
  let client: MemcachedClient | undefined
  before(async () => {
    server = await MemcachedServer.start()
    client = new MemcachedClient({ ...clientOptions, servers: [server.address] })
  })
  after(async () => {
    await client?.close()
    await server?.stop()
  })
  return {
    get server () { return started(server) },
    get client () { return started(client) }
  }
}

function started<T> (value: T | undefined): T {
  if (value === undefined) throw new Error('useMemcached(): read server and client inside tests and hooks, not while the file loads')
  return value
}
