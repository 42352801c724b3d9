/**
 * One adapter per memcached client under test, all with the same promise
 * shape so the measuring loops are identical for every client. Each peer is
 * configured as its README suggests for one server; where a peer has no
 * multi-key get, the note says what stands in for it. The methods hand back
 * the client's own promise (no extra async wrapper), so the bench adds the
 * least it can to every client alike.
 */
import Memcached from 'memcached'
import { MemcacheClient } from 'memcache-client'
import memjs from 'memjs'
import { MemcachedClient } from '../../src/index.js'
import { CoalescedFloor } from './coalesced-floor.js'
import { PromiseFloor, floorGet, floorSet } from './promise-floor.js'
import { COALESCED_FLOOR_ID, CONTRACT_FLOOR_ID, GET_KEYS, PROMISE_FLOOR_ID, VALUE_BYTES } from './workload.js'

export interface Driver {
  /** Short, stable id used in results. */
  readonly id: string
  /** Label for tables and charts. */
  readonly label: string
  /** Set when this driver does not run every operation the same way. */
  readonly note?: string
  /** Operations this driver is measured on. */
  readonly ops: ReadonlySet<Operation>
  get (key: string): Promise<unknown>
  set (key: string, value: Buffer): Promise<unknown>
  getMulti (keys: readonly string[]): Promise<unknown>
  close (): Promise<void>
}

export type Operation = 'get' | 'set' | 'mget'

const ALL_OPS: ReadonlySet<Operation> = new Set(['get', 'set', 'mget'])

/** Our client, with `coalesceGets` as given; `Client` from another build of ours, for an A/B of two builds (ab.ts). */
export function ours (server: string, coalesceGets: boolean, Client: typeof MemcachedClient = MemcachedClient): Driver {
  const client = new Client({ servers: [server], coalesceGets, timeout: 5000 })
  return {
    id: coalesceGets ? 'ours' : 'ours-nocoalesce',
    label: coalesceGets ? 'ours (coalescing)' : 'ours (coalesceGets: false)',
    // set and getMulti do not coalesce: the default client measures them.
    ops: coalesceGets ? ALL_OPS : new Set(['get']),
    get: (key) => client.get(key),
    set: (key, value) => client.set(key, value),
    getMulti: (keys) => client.getMulti(keys),
    close: async () => await client.close()
  }
}

export function memjsDriver (server: string): Driver {
  const client = memjs.Client.create(server, { timeout: 5, retries: 0, logger: { log: () => {} } })
  return {
    id: 'memjs',
    label: 'memjs 1.3.2',
    note: 'binary protocol; no multi-key get, so the 100-key get is 100 pipelined gets',
    ops: ALL_OPS,
    get: (key) => client.get(key),
    set: (key, value) => client.set(key, value, {}),
    getMulti: (keys) => Promise.all(keys.map((key) => client.get(key))),
    close: async () => { client.close() }
  }
}

export function memcachedDriver (server: string): Driver {
  const client = new Memcached(server)
  return {
    id: 'memcached',
    label: 'memcached 2.2.2',
    note: 'default pool of up to 10 connections',
    ops: ALL_OPS,
    get: (key) => new Promise((resolve, reject) => {
      client.get(key, (error: unknown, data: unknown) => { if (error) reject(error as Error); else resolve(data) })
    }),
    set: (key, value) => new Promise((resolve, reject) => {
      client.set(key, value, 0, (error: unknown, ok: boolean) => { if (error) reject(error as Error); else resolve(ok) })
    }),
    getMulti: (keys) => new Promise((resolve, reject) => {
      client.getMulti([...keys], (error: unknown, data: unknown) => { if (error) reject(error as Error); else resolve(data) })
    }),
    close: async () => { client.end() }
  }
}

export function memcacheClientDriver (server: string): Driver {
  const client = new MemcacheClient({ server, cmdTimeout: 5000, noDelay: true })
  return {
    id: 'memcache-client',
    label: 'memcache-client 1.0.5',
    note: 'one connection (its default maxConnections), noDelay on',
    ops: ALL_OPS,
    get: (key) => client.get(key),
    set: (key, value) => client.set(key, value),
    getMulti: (keys) => client.get([...keys]),
    close: async () => { client.shutdown() }
  }
}

/**
 * A coalesced floor (coalesced-floor.ts; with `contract`, the contract floor)
 * in a driver's shape, get only: for the tools that measure it the way they
 * measure a client (profile.ts, ab.ts). The suite drives the floors itself.
 */
export async function coalescedFloorDriver (server: string, contract: boolean): Promise<Driver> {
  const [host, port] = server.split(':') as [string, string]
  const floor = await CoalescedFloor.connect(host, Number(port), contract)
  const getOnly = async (): Promise<never> => await Promise.reject(new Error('the coalesced floors measure get only'))
  return {
    id: contract ? CONTRACT_FLOOR_ID : COALESCED_FLOOR_ID,
    label: contract ? 'the contract floor' : 'the coalesced floor',
    ops: new Set(['get']),
    get: (key) => floor.get(key),
    set: getOnly,
    getMulti: getOnly,
    close: async () => floor.close()
  }
}

/**
 * The promise floor (promise-floor.ts) in a driver's shape, get and set of
 * the bench's values only, for the tools that measure it the way they
 * measure a client (ab.ts). The suite drives it itself.
 */
export async function promiseFloorDriver (server: string, value: Buffer): Promise<Driver> {
  const [host, port] = server.split(':') as [string, string]
  // One socket per command: each then carries replies of one known length.
  const [get, set] = await Promise.all([
    PromiseFloor.connect(host, Number(port), floorGet((GET_KEYS[0] as string).length, VALUE_BYTES)),
    PromiseFloor.connect(host, Number(port), floorSet(value))
  ])
  return {
    id: PROMISE_FLOOR_ID,
    label: 'the promise floor',
    ops: new Set(['get', 'set']),
    get: (key) => get.send(key),
    set: (key) => set.send(key),
    getMulti: async () => await Promise.reject(new Error('the promise floor measures get and set only')),
    close: async () => { get.close(); set.close() }
  }
}

const FACTORIES: Readonly<Record<string, (server: string) => Driver>> = {
  ours: (server) => ours(server, true),
  'ours-nocoalesce': (server) => ours(server, false),
  memjs: memjsDriver,
  memcached: memcachedDriver,
  'memcache-client': memcacheClientDriver,
  // The A/A control (workload.ts TWIN_ID): ours again, in a process of its own.
  'ours-twin': (server) => ({
    ...ours(server, true),
    id: 'ours-twin',
    label: 'ours again (A/A control)',
    note: 'the same code as ours (coalescing), a second process measured like any client: its ratio to ours is what the machine\'s noise alone does to a paired ratio in that scenario'
  })
}

/** The id of every client, ours first. */
export const DRIVER_IDS: readonly string[] = Object.keys(FACTORIES)

/** The client with this id, connected to `server`. */
export function createDriver (id: string, server: string): Driver {
  const factory = FACTORIES[id]
  if (factory === undefined) throw new Error(`unknown client ${JSON.stringify(id)} (${DRIVER_IDS.join(', ')})`)
  return factory(server)
}
