/**
 * MemcachedClient: the public API. Validates arguments before anything is
 * queued, routes each key to a server by ketama, and ejects servers that keep
 * failing until a probe finds them answering again.
 */
import { Buffer } from 'node:buffer'
import { performance } from 'node:perf_hooks'
import type tls from 'node:tls'
import {
  MultiGet, SingleRequest, StorageLine, TouchLine, exptime, flagsProblem, invalidKey, keyProblem, replyError, retrievalLine,
  touchRetrievalLine, commandLine, ttlProblem, valueSize, type FieldLine, type Interpret, type ItemResult, type Retrieval
} from './commands.js'
import { Connection, type ConnectionEvents } from './connection.js'
import { commandChannel, traceCommand, verbOf, type CommandTrace } from './diagnostics.js'
import { MemcachedError } from './errors.js'
import type { ReplyKind, Status } from './parser.js'
import { KetamaRing, parseServer, type RingNode } from './ring.js'

/** Options of {@link MemcachedClient}; every duration is in milliseconds. */
export interface MemcachedClientOptions {
  /** `'host:port'` or `'host:port:weight'` (IPv6 as `'[::1]:11211'`). Default `['127.0.0.1:11211']`. */
  servers?: readonly string[]
  /** How long a command may wait for its reply, in ms. Default 1000. */
  timeout?: number
  /** How long a connection attempt may take, in ms. Default 1000. */
  connectTimeout?: number
  /** Commands per server not yet answered (queued and in flight) before `MC_QUEUE_FULL`. Default 10 000. */
  maxQueue?: number
  /** Largest value in bytes; larger values reject with `MC_TOO_LARGE` before sending. Default 1 048 576. */
  maxValueSize?: number
  /** Consecutive failures (refused, connect timeout, lost, command timeout) before a server leaves the ring. Default 2. */
  failures?: number
  /** How long an ejected server stays out before it is probed again, in ms. Default 1000. */
  retryDelay?: number
  /** TLS options to speak TLS (memcached started with `-Z`); plain TCP when undefined. */
  tls?: tls.ConnectionOptions
  /**
   * Send the single-key `get`s that reach one server in the same tick as one
   * multi-key `get`. Each caller still gets its own value. Default true.
   */
  coalesceGets?: boolean
  /**
   * The servers are proxies (twemproxy, mcrouter) in front of memcached
   * pools. What proxies do not serve (`flush`, `stats`, `gat`) then rejects
   * at once with `MC_UNSUPPORTED`, never written: twemproxy would close the
   * connection, failing every command in flight with it. Default false.
   */
  proxy?: boolean
}

/** Options of the storage commands. */
export interface StoreOptions {
  /** Seconds until the item expires, relative; 0 (the default) never expires. Above 30 days the absolute time is sent for you. */
  ttl?: number
  /** Opaque unsigned 32-bit integer stored with the item. Default 0. */
  flags?: number
}

/** The answer to `gets`: the value, its flags and its cas unique. */
export interface CasItem {
  value: Buffer
  flags: number
  cas: bigint
}

/** One server's answer to {@link MemcachedClient.ping}. */
export interface ServerHealth {
  /** Whether it answered `version` in time. */
  ok: boolean
  /** Whether it is currently out of the ring after repeated failures. */
  ejected: boolean
  /** Round trip of the `version` command (or time to the failure), in ms. */
  latencyMs: number
  /** Why it failed, when it did. */
  error?: string
}

/** Outcome of a `cas`: stored, someone else changed it (`exists`), or it is gone (`not_found`). */
export type CasResult = 'stored' | 'exists' | 'not_found'

type Value = string | Buffer | Uint8Array

interface ServerEntry extends RingNode {
  readonly connection: Connection
  ejected: boolean
  probeTimer: NodeJS.Timeout | undefined
  lastError: MemcachedError | undefined
}

const DEFAULTS = {
  servers: ['127.0.0.1:11211'],
  timeout: 1000,
  connectTimeout: 1000,
  maxQueue: 10_000,
  maxValueSize: 1_048_576,
  failures: 2,
  retryDelay: 1000,
  coalesceGets: true,
  proxy: false
}
const PREFIX = 'fastify-memcached-session: '
const MAX_UINT64 = 0xffffffffffffffffn

// ---- reply interpretation: one static function per command shape ----

function status (reply: Parameters<Interpret<unknown>>[0]): Status | undefined {
  return reply.type === 'status' ? reply.status : undefined
}

const asValue: Interpret<Buffer | undefined> = (reply, request, server) =>
  reply.type === 'end' ? request.items?.[0]?.value : replyError(reply, server)

const itemValue: ItemResult<Buffer> = (value, _flags, _cas, copy) => copy ? Buffer.from(value) : value

const casItem: ItemResult<CasItem> = (value, flags, cas, copy) => ({ value: copy ? Buffer.from(value) : value, flags, cas: cas ?? 0n })

/** The coalescing retrievals; a batch takes only callers of the same one. */
const GET: Retrieval<Buffer> = { verb: 'get', result: itemValue }
const GETS: Retrieval<CasItem> = { verb: 'gets', result: casItem }

const asCasItem: Interpret<CasItem | undefined> = (reply, request, server) => {
  if (reply.type !== 'end') return replyError(reply, server)
  const item = request.items?.[0]
  return item === undefined ? undefined : casItem(item.value, item.flags, item.cas, false)
}

const asVoid: Interpret<undefined> = (reply, _request, server) =>
  status(reply) === 'STORED' || status(reply) === 'OK' ? undefined : replyError(reply, server)

const asStored: Interpret<boolean> = (reply, _request, server) => {
  const word = status(reply)
  if (word === 'STORED') return true
  if (word === 'NOT_STORED') return false
  return replyError(reply, server)
}

const asCasResult: Interpret<CasResult> = (reply, _request, server) => {
  const word = status(reply)
  if (word === 'STORED') return 'stored'
  if (word === 'EXISTS') return 'exists'
  if (word === 'NOT_FOUND') return 'not_found'
  return replyError(reply, server)
}

/** DELETED / TOUCHED -> true, NOT_FOUND -> false. */
const asFound: Interpret<boolean> = (reply, _request, server) => {
  const word = status(reply)
  if (word === 'DELETED' || word === 'TOUCHED') return true
  if (word === 'NOT_FOUND') return false
  return replyError(reply, server)
}

const asNumber: Interpret<bigint | undefined> = (reply, _request, server) => {
  if (reply.type === 'number') return reply.value
  return status(reply) === 'NOT_FOUND' ? undefined : replyError(reply, server)
}

const asVersion: Interpret<string> = (reply, _request, server) =>
  reply.type === 'version' ? reply.version : replyError(reply, server)

const asStats: Interpret<Record<string, string>> = (reply, request, server) =>
  reply.type === 'end' ? { ...request.stats } : replyError(reply, server)

/**
 * The settling functions of the promise made last with {@link keepSettlers}
 * as its executor. One module function is the executor of every command's
 * promise: an arrow function per command costs a closure and its context
 * (about 70 bytes a command). The caller takes them at once and calls
 * {@link forgetSettlers}, so a settled promise and its value are not kept
 * alive here.
 */
let keptResolve: (result: never) => void = forgetSettlers
let keptReject: (error: MemcachedError) => void = forgetSettlers

function keepSettlers (resolve: (result: never) => void, reject: (error: MemcachedError) => void): void {
  keptResolve = resolve
  keptReject = reject
}

function forgetSettlers (): void {
  keptResolve = forgetSettlers
  keptReject = forgetSettlers
}

function positiveInteger (name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < 1) throw new TypeError(`${PREFIX}${name} must be a positive integer, got ${String(value)}`)
  return value
}

/**
 * A memcached client over the text protocol: one pipelined connection per
 * server, ketama routing compatible with libmemcached, failover, timeouts and
 * TLS. Every method returns a promise and never throws synchronously; a miss
 * resolves `undefined` (or `false`), never an error.
 */
export class MemcachedClient {
  private readonly entries: ServerEntry[]
  private ring: KetamaRing<ServerEntry>
  private readonly maxValueSize: number
  private readonly failures: number
  private readonly retryDelay: number
  private readonly coalesceGets: boolean
  /** Whether the servers are proxies (the `proxy` option): what they do not serve is never sent. */
  readonly proxy: boolean
  private closed = false
  /**
   * The last key {@link keyProblem} accepted. A session store sends two or
   * three commands for one key (`gets` and `touch`, then `cas`), usually the
   * same string: checked once, compared (by reference, mostly) after that.
   * Undefined at first, so every string is checked, the empty one included.
   */
  private checkedKey: string | undefined
  /** Set on views made by {@link forServer}: every key goes to this server. */
  private pinned: ServerEntry | undefined

  /** @throws TypeError for invalid options (a server spec, a non-positive duration). */
  constructor (options: MemcachedClientOptions = {}) {
    const servers = options.servers ?? DEFAULTS.servers
    if (!Array.isArray(servers) || servers.length === 0) throw new TypeError(`${PREFIX}servers must be a non-empty array of 'host:port' strings`)
    const timeout = positiveInteger('timeout', options.timeout, DEFAULTS.timeout)
    const connectTimeout = positiveInteger('connectTimeout', options.connectTimeout, DEFAULTS.connectTimeout)
    const maxQueue = positiveInteger('maxQueue', options.maxQueue, DEFAULTS.maxQueue)
    this.maxValueSize = positiveInteger('maxValueSize', options.maxValueSize, DEFAULTS.maxValueSize)
    this.failures = positiveInteger('failures', options.failures, DEFAULTS.failures)
    this.retryDelay = positiveInteger('retryDelay', options.retryDelay, DEFAULTS.retryDelay)
    this.coalesceGets = options.coalesceGets ?? DEFAULTS.coalesceGets
    this.proxy = options.proxy ?? DEFAULTS.proxy
    const events: ConnectionEvents = {
      onFailure: (connection, error, consecutive) => this.onFailure(connection, error, consecutive)
    }
    this.entries = servers.map((spec) => {
      const { host, port, weight } = parseServer(spec)
      const connection = new Connection({
        host, port, timeout, connectTimeout, maxQueue, maxValueSize: this.maxValueSize, maxBackoff: this.retryDelay, tls: options.tls, proxy: this.proxy
      }, events)
      return { id: connection.server, host, port, weight, connection, ejected: false, probeTimer: undefined, lastError: undefined }
    })
    this.ring = new KetamaRing(this.entries)
  }

  /** `host:port` of every configured server, in configuration order. */
  get servers (): string[] {
    return this.entries.map((entry) => entry.id)
  }

  /** `host:port` of the servers currently on the ring (not ejected). */
  get liveServers (): string[] {
    return this.entries.filter((entry) => !entry.ejected).map((entry) => entry.id)
  }

  /**
   * `host:port` of up to `count` distinct live servers for `key`: its own
   * server first, then the next ones clockwise on the ring (for replication).
   */
  serversFor (key: string, count: number): string[] {
    return this.ring.getN(key, count).map((entry) => entry.id)
  }

  /**
   * A view of this client whose commands all go to one server, bypassing the
   * ring (for replication, or to inspect one server). It shares this client's
   * connection; closing either closes both.
   *
   * @param server - `host:port` as listed in {@link servers}
   * @throws TypeError when the server is not one of this client's
   */
  forServer (server: string): MemcachedClient {
    const entry = this.entries.find((candidate) => candidate.id === server)
    if (entry === undefined) throw new TypeError(`${PREFIX}${server} is not one of this client's servers (${this.servers.join(', ')})`)
    const view = Object.create(this) as MemcachedClient
    view.pinned = entry
    return view
  }

  /**
   * Health of every server, for readiness checks: a `version` round trip
   * each, never rejecting. `latencyMs` is the round trip in milliseconds.
   */
  async ping (): Promise<Record<string, ServerHealth>> {
    const results = await Promise.all(this.entries.map(async (entry): Promise<ServerHealth> => {
      const started = performance.now()
      try {
        await this.request(entry.connection, 'version', 'version\r\n', undefined, 0, asVersion, null)
        return { ok: true, ejected: entry.ejected, latencyMs: performance.now() - started }
      } catch (error) {
        return { ok: false, ejected: entry.ejected, latencyMs: performance.now() - started, error: (error as Error).message }
      }
    }))
    return Object.fromEntries(this.entries.map((entry, i) => [entry.id, results[i] as ServerHealth]))
  }

  // ---- retrieval ----

  /** The value stored under `key`, or undefined on a miss. */
  get (key: string): Promise<Buffer | undefined> {
    return this.retrieve(GET, key, asValue)
  }

  /** The value, flags and cas unique of `key` (for {@link cas}), or undefined on a miss; coalesced like {@link get}. */
  gets (key: string): Promise<CasItem | undefined> {
    return this.retrieve(GETS, key, asCasItem)
  }

  /** A single-key retrieval: coalesced with the tick's others, or on its own with `coalesceGets: false`. */
  private retrieve<T> (retrieval: Retrieval<T>, key: string, interpret: Interpret<T | undefined>): Promise<T | undefined> {
    const connection = this.route(key)
    if (connection instanceof MemcachedError) return Promise.reject(connection)
    if (!this.coalesceGets) return this.request(connection, 'values', retrievalLine(retrieval.verb, [key]), undefined, 0, interpret, key)
    const promise = new Promise<T | undefined>(keepSettlers)
    connection.sendRetrieval(retrieval, key, keptResolve as (value: T | undefined) => void, keptReject)
    forgetSettlers()
    return commandChannel.hasSubscribers ? traceCommand(trace(retrieval.verb, connection, 1, 0), promise) : promise
  }

  /**
   * The values of many keys: one multi-key `get` per server, all servers in
   * parallel. Misses are absent from the map. One invalid key rejects the whole call.
   */
  getMulti (keys: readonly string[]): Promise<Map<string, Buffer>> {
    const groups = this.groupByServer(keys)
    if (groups instanceof MemcachedError) return Promise.reject(groups)
    const found = new Map<string, Buffer>()
    if (groups.size === 1) {
      const [[connection, group]] = groups
      return this.multiGet(connection, group, found)
    }
    return Promise.all([...groups].map(async ([connection, group]) => await this.multiGet(connection, group, found))).then(() => found)
  }

  /**
   * The keys per server, in the caller's order; an error for the first key
   * that cannot be sent. Repeated keys are not removed: hashing every key to
   * find them would cost more than the rare repeat, and the map that
   * {@link getMulti} returns holds each key once anyway.
   */
  private groupByServer (keys: readonly string[]): Map<Connection, string[]> | MemcachedError {
    const groups = new Map<Connection, string[]>()
    if (keys.length === 0) return groups
    if (this.pinned !== undefined || this.entries.length === 1) {
      // One server: every key goes to it, so validating them is all the routing there is.
      for (const key of keys) {
        const problem = keyProblem(key)
        if (problem !== undefined) return invalidKey(key, problem)
      }
      const connection = this.route(keys[0] as string)
      if (connection instanceof MemcachedError) return connection
      // A copy: the line is written at the next flush, after the caller may have changed its array.
      return groups.set(connection, keys.slice())
    }
    for (const key of keys) {
      const connection = this.route(key)
      if (connection instanceof MemcachedError) return connection
      const group = groups.get(connection)
      if (group === undefined) groups.set(connection, [key])
      else group.push(key)
    }
    return groups
  }

  /** One server's share of a getMulti; resolves with `found`, which every share fills. */
  private multiGet (connection: Connection, keys: readonly string[], found: Map<string, Buffer>): Promise<Map<string, Buffer>> {
    const promise = new Promise<Map<string, Buffer>>((resolve, reject) => connection.send(new MultiGet(keys, found, resolve, reject)))
    return commandChannel.hasSubscribers ? traceCommand(trace('get', connection, keys.length, 0), promise) : promise
  }

  /**
   * Get and touch: the value of `key` (undefined on a miss), its expiry reset
   * to `ttl` seconds. `MC_UNSUPPORTED` with `proxy: true` (use `gets` and `touch`).
   */
  async gat (key: string, ttl: number): Promise<Buffer | undefined> {
    if (this.proxy) throw this.unsupported('gat')
    const connection = this.route(key)
    if (connection instanceof MemcachedError) throw connection
    checkTtl(ttl)
    return await this.request(connection, 'values', touchRetrievalLine('gat', exptime(ttl), [key]), undefined, 0, asValue, key)
  }

  // ---- storage ----

  /** Stores `value` under `key` unconditionally. */
  set (key: string, value: Value, options?: StoreOptions): Promise<void> {
    return this.store('set', key, value, options, undefined, asVoid)
  }

  /** Stores only if `key` holds nothing; false when it exists (NOT_STORED). */
  add (key: string, value: Value, options?: StoreOptions): Promise<boolean> {
    return this.store('add', key, value, options, undefined, asStored)
  }

  /** Stores only if `key` exists; false when it does not (NOT_STORED). */
  async replace (key: string, value: Value, options?: StoreOptions): Promise<boolean> {
    return await this.store('replace', key, value, options, undefined, asStored)
  }

  /** Appends bytes to an existing value (flags and expiry unchanged); false when `key` does not exist. */
  async append (key: string, value: Value): Promise<boolean> {
    return await this.store('append', key, value, undefined, undefined, asStored)
  }

  /** Prepends bytes to an existing value; false when `key` does not exist. */
  async prepend (key: string, value: Value): Promise<boolean> {
    return await this.store('prepend', key, value, undefined, undefined, asStored)
  }

  /**
   * Stores only if nobody wrote `key` since the `gets` that returned `cas`:
   * 'stored', 'exists' (someone did), or 'not_found' (deleted or expired).
   */
  cas (key: string, value: Value, cas: bigint, options?: StoreOptions): Promise<CasResult> {
    if (typeof cas !== 'bigint' || cas < 0n || cas > MAX_UINT64) return Promise.reject(new TypeError(`${PREFIX}cas must be a bigint from gets()`))
    return this.store('cas', key, value, options, cas, asCasResult)
  }

  /** Validates everything before queueing; rejects, never throws. */
  private store<T> (verb: StorageLine['verb'], key: string, value: Value, options: StoreOptions | undefined, cas: bigint | undefined, interpret: Interpret<T>): Promise<T> {
    const connection = this.route(key)
    if (connection instanceof MemcachedError) return Promise.reject(connection)
    const bytes = valueSize(value)
    if (bytes < 0) return Promise.reject(new TypeError(`${PREFIX}a value must be a string or a Buffer`))
    if (bytes > this.maxValueSize) {
      return Promise.reject(new MemcachedError('MC_TOO_LARGE', `value of ${bytes} bytes for ${JSON.stringify(key)} exceeds maxValueSize (${this.maxValueSize})`, { server: connection.server }))
    }
    const ttl = options?.ttl ?? 0
    const flags = options?.flags ?? 0
    const problem = ttlProblem(ttl) ?? flagsProblem(flags)
    if (problem !== undefined) return Promise.reject(new TypeError(`${PREFIX}${problem}`))
    return this.request(connection, 'store', new StorageLine(verb, key, flags, exptime(ttl), bytes, cas), value, bytes, interpret)
  }

  // ---- other commands ----

  /** Deletes `key`; false when it did not exist. */
  delete (key: string): Promise<boolean> {
    const connection = this.route(key)
    if (connection instanceof MemcachedError) return Promise.reject(connection)
    return this.request(connection, 'delete', `delete ${key}\r\n`, undefined, 0, asFound)
  }

  /** Adds `delta` to the unsigned 64-bit counter at `key` (wrapping at 2^64); undefined when `key` does not exist. */
  async incr (key: string, delta: number | bigint = 1): Promise<bigint | undefined> {
    return await this.arithmetic('incr', key, delta)
  }

  /** Subtracts `delta` from the counter at `key`, stopping at 0; undefined when `key` does not exist. */
  async decr (key: string, delta: number | bigint = 1): Promise<bigint | undefined> {
    return await this.arithmetic('decr', key, delta)
  }

  private async arithmetic (verb: 'incr' | 'decr', key: string, delta: number | bigint): Promise<bigint | undefined> {
    const connection = this.route(key)
    if (connection instanceof MemcachedError) throw connection
    const amount = typeof delta === 'number' && Number.isSafeInteger(delta) ? BigInt(delta) : delta
    if (typeof amount !== 'bigint' || amount < 0n || amount > MAX_UINT64) {
      throw new TypeError(`${PREFIX}${verb} delta must be an integer from 0 to 2^64-1`)
    }
    return await this.request(connection, 'number', commandLine(verb, key, amount), undefined, 0, asNumber)
  }

  /** Resets the expiry of `key` to `ttl` seconds; false when `key` does not exist. */
  touch (key: string, ttl: number): Promise<boolean> {
    const connection = this.route(key)
    if (connection instanceof MemcachedError) return Promise.reject(connection)
    const problem = ttlProblem(ttl)
    if (problem !== undefined) return Promise.reject(new TypeError(`${PREFIX}${problem}`))
    return this.request(connection, 'touch', new TouchLine(key, exptime(ttl)), undefined, 0, asFound)
  }

  /** `flush_all` on every server: every item becomes invalid. `MC_UNSUPPORTED` with `proxy: true`. */
  async flush (): Promise<void> {
    if (this.proxy) throw this.unsupported('flush')
    await this.everyServer('ok', 'flush_all\r\n', asVoid)
  }

  /**
   * Each server's version, keyed by `host:port`, e.g. `{ '127.0.0.1:11211': '1.6.18' }`;
   * with `proxy: true`, keyed by proxy (twemproxy answers with a backend's version).
   */
  async version (): Promise<Record<string, string>> {
    return await this.everyServer('version', 'version\r\n', asVersion)
  }

  /** Each server's general-purpose statistics (`stats`), keyed by `host:port`. `MC_UNSUPPORTED` with `proxy: true`. */
  async stats (): Promise<Record<string, Record<string, string>>> {
    if (this.proxy) throw this.unsupported('stats')
    return await this.everyServer('stats', 'stats\r\n', asStats)
  }

  private async everyServer<T> (kind: ReplyKind, line: string, interpret: Interpret<T>): Promise<Record<string, T>> {
    if (this.closed) throw new MemcachedError('MC_CLOSED', 'the client is closed')
    const results = await Promise.all(this.entries.map(async (entry) =>
      await this.request(entry.connection, kind, line, undefined, 0, interpret, null)))
    return Object.fromEntries(this.entries.map((entry, i) => [entry.id, results[i] as T]))
  }

  /**
   * Lets queued and in-flight commands finish, rejects later ones with
   * `MC_CLOSED`, then ends every socket; afterwards no timer or socket of the
   * client keeps the process alive.
   */
  async close (): Promise<void> {
    this.closed = true
    for (const entry of this.entries) clearTimeout(entry.probeTimer)
    await Promise.all(this.entries.map(async (entry) => await entry.connection.close()))
  }

  // ---- routing and failover ----

  private route (key: string): Connection | MemcachedError {
    if (key !== this.checkedKey) {
      const problem = keyProblem(key)
      if (problem !== undefined) return invalidKey(key, problem)
      this.checkedKey = key
    }
    if (this.closed) return new MemcachedError('MC_CLOSED', 'the client is closed')
    if (this.pinned !== undefined) return this.pinned.connection
    const entry = this.ring.size === 1 && this.entries.length === 1 ? this.entries[0] : this.ring.get(key)
    if (entry === undefined || entry.ejected) return this.noServers()
    return entry.connection
  }

  private unsupported (method: string): MemcachedError {
    return new MemcachedError('MC_UNSUPPORTED', `${method}() is not served by proxies (proxy: true), so it was not sent`)
  }

  private noServers (): MemcachedError {
    const reasons = this.entries.map((entry) => `${entry.id} (${entry.lastError?.message ?? 'ejected'})`).join(', ')
    return new MemcachedError('MC_NO_SERVERS', `no memcached server available: ${reasons}; retrying every ${this.retryDelay} ms`, {
      cause: this.entries[0]?.lastError
    })
  }

  /**
   * Queues one request. `wanted` names the key of a retrieval; a server
   * command (no key) passes null and counts 0 keys in traces.
   */
  private request<T> (connection: Connection, kind: ReplyKind, head: string | FieldLine, body: Value | undefined, bodySize: number, interpret: Interpret<T>, wanted?: string | null): Promise<T> {
    const promise = new Promise<T>(keepSettlers)
    connection.send(new SingleRequest(kind, head, body, bodySize, interpret, keptResolve as (result: T) => void, keptReject, wanted ?? undefined))
    forgetSettlers()
    if (!commandChannel.hasSubscribers) return promise
    const keys = wanted === null ? 0 : 1
    return traceCommand(trace(typeof head === 'string' ? verbOf(head) : head.verb, connection, keys, bodySize), promise)
  }

  private onFailure (connection: Connection, error: MemcachedError, consecutive: number): void {
    const entry = this.entries.find((candidate) => candidate.connection === connection)
    if (entry === undefined || this.closed) return
    entry.lastError = error
    if (entry.ejected || consecutive < this.failures) return
    entry.ejected = true
    this.ring = new KetamaRing(this.entries.filter((candidate) => !candidate.ejected))
    this.scheduleProbe(entry)
  }

  private scheduleProbe (entry: ServerEntry): void {
    if (this.closed) return
    entry.probeTimer = setTimeout(() => { void this.probe(entry) }, this.retryDelay)
    // An ejected server must not keep the process alive on its own.
    entry.probeTimer.unref()
  }

  private async probe (entry: ServerEntry): Promise<void> {
    entry.probeTimer = undefined
    if (this.closed) return
    if (!await entry.connection.probe()) return this.scheduleProbe(entry)
    if (this.closed) return
    entry.ejected = false
    this.ring = new KetamaRing(this.entries.filter((candidate) => !candidate.ejected))
  }
}

function trace (command: string, connection: Connection, keys: number, bytesOut: number): CommandTrace {
  return { command, server: connection.server, keys, bytesOut, bytesIn: 0 }
}

function checkTtl (ttl: number): void {
  const problem = ttlProblem(ttl)
  if (problem !== undefined) throw new TypeError(`${PREFIX}${problem}`)
}
