import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { MemcachedClient } from '../../protocol/client.js'
import type { CasItem, CasResult, ServerHealth } from '../../protocol/client.js'
import { MemcachedError } from '../../protocol/errors.js'
import {
  AT, LEGACY, TOMBSTONE, compare, decodeVersion, encodeCopy, encodeVersion, expiry, freshest, nowSeconds, parseCopy,
  type Copy, type Live, type Stamp
} from './replica-copy.js'
import type { SessionStore, StoredRecord } from './store.js'

/** Options of {@link MemcachedStore}: a client to share, or servers to connect to. */
export interface MemcachedStoreOptions {
  /**
   * A client the app owns; {@link MemcachedStore.close} leaves it open.
   * Exclusive with `servers`.
   */
  client?: MemcachedClient
  /**
   * `'host:port'` or `'host:port:weight'` entries; the store creates its own
   * client with default options and closes it in {@link MemcachedStore.close}.
   * Default `['127.0.0.1:11211']` when `client` is not given.
   */
  servers?: string[]
  /** With `servers`: they are proxies (the client's `proxy` option). Default false. */
  proxy?: boolean
  /**
   * Copies of each record, on the key's own server and the next distinct
   * live servers along the ketama ring. Default 1; at most the number of
   * servers. See docs/reliability.md, "Consistency model".
   */
  replicas?: number
  /**
   * Seconds a destroyed session's tombstone lives (`replicas` >= 2). It must
   * outlive any copy an unreachable server may still hold, so give it the
   * plugin's idle `ttl`; it is raised to the longest TTL this store has
   * written. Default 86_400, the plugin's default `ttl`.
   */
  tombstoneTtl?: number
}

/** Background work of a replicated {@link MemcachedStore}, for tests and metrics. */
export interface ReplicaCounters {
  /** Missing copies restored from a live one (an `add`, never overwriting). */
  repaired: number
  /** Tombstones copied onto replicas that still held the session or lacked it. */
  buried: number
  /** Background writes that failed (server down); a later load retries. */
  failed: number
}

const DEFAULT_TOMBSTONE_TTL = 86_400
/** Attempts of one conditional write on one replica before reporting a conflict. */
const MAX_WRITE_ATTEMPTS = 4
// A failing replica is skipped (reads use the others, writes fail over);
// anything else (too large, invalid key, closed) is the same on every replica.
const FAILOVER = new Set(['MC_TIMEOUT', 'MC_CONNECTION', 'MC_SERVER_ERROR', 'MC_PROTOCOL', 'MC_QUEUE_FULL', 'MC_NO_SERVERS', 'MC_CLIENT_ERROR'])
// A replica that timed out, dropped or garbled a reply is skipped for this
// long (ms) while the others answer: otherwise a hanging server, not yet
// ejected by the client, would cost a request one timeout to load and a
// second one to save. The client's own ejection takes over after that.
const SUSPECT = new Set(['MC_TIMEOUT', 'MC_CONNECTION', 'MC_PROTOCOL'])
const SUSPECT_MS = 1000

type Outcome = 'stored' | 'missing' | 'conflict' | 'dead'

/** One write fanned out to the replicas: the stamp it replaces and the one it writes. */
interface WriteOp { key: string, raw: string, ttl: number, expected: Stamp, next: Stamp }

function failsOver (error: unknown): boolean {
  return error instanceof MemcachedError && FAILOVER.has(error.code)
}

function positive (name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new TypeError(`fastify-memcached-session: MemcachedStore ${name} must be a positive integer, got ${String(value)}`)
  }
  return value
}

/**
 * The {@link SessionStore} over memcached, with memcached's expiry as the
 * idle timeout and values as UTF-8 text.
 *
 * With `replicas: 1` (the default) each call is one command of
 * {@link MemcachedClient} on the key's server, and its CAS unique is the
 * record's version.
 *
 * With `replicas: n` each record lives on the key's server and the next
 * `n - 1` distinct live servers along the ring, stamped with a generation
 * (see the module comment). A load reads every replica at once, returns the
 * highest stamp and restores missing copies in the background (`add`, never
 * overwriting); a tombstone on any replica makes it a miss. A save commits on
 * the first replica holding the record (normally the key's own server, which
 * serialises concurrent saves), then brings the others up to it. A destroy
 * writes tombstones. docs/reliability.md states what holds under failures.
 */
export class MemcachedStore implements SessionStore {
  /** The client commands go through. */
  readonly client: MemcachedClient
  /** Copies of each record. */
  readonly replicas: number
  /** Background work done so far (replicated stores only). */
  readonly counters: ReplicaCounters = { repaired: 0, buried: 0, failed: 0 }
  private readonly ownsClient: boolean
  private readonly slots: Map<string, number>
  private readonly views = new Map<string, MemcachedClient>()
  private readonly pending = new Set<Promise<void>>()
  /** `server key` of the repairs in flight, so concurrent loads repair once. */
  private readonly repairing = new Set<string>()
  /** Replicas that failed lately -> until when (performance.now() ms) they are skipped. */
  private readonly suspects = new Map<string, number>()
  private tombstoneTtl: number

  constructor (options: MemcachedStoreOptions = {}) {
    if (options.client !== undefined && options.servers !== undefined) {
      throw new TypeError('fastify-memcached-session: MemcachedStore takes either client or servers, not both')
    }
    const replicas = positive('replicas', options.replicas, 1)
    this.tombstoneTtl = positive('tombstoneTtl', options.tombstoneTtl, DEFAULT_TOMBSTONE_TTL)
    const client = options.client ?? new MemcachedClient({ servers: options.servers ?? ['127.0.0.1:11211'], proxy: options.proxy })
    if (replicas > client.servers.length) {
      if (options.client === undefined) void client.close()
      throw new TypeError(`fastify-memcached-session: replicas (${replicas}) cannot exceed the number of servers (${client.servers.length})`)
    }
    this.replicas = replicas
    this.ownsClient = options.client === undefined
    this.client = client
    this.slots = new Map(client.servers.map((server, slot) => [server, slot]))
  }

  /** Background repairs not finished yet. */
  get pendingRepairs (): number {
    return this.pending.size
  }

  // With one copy each method is one client command (two for getAndTouch),
  // passed on without an async frame of its own: the client's promises
  // never throw synchronously, and neither does `saw`.

  get (key: string): Promise<StoredRecord | undefined> {
    if (this.replicas === 1) return this.client.gets(key).then(single)
    return this.getReplicated(key, undefined)
  }

  /**
   * `gets` and `touch` written in the same tick, hence in one batch: one
   * round trip. Not `gat`/`gats`, which proxies such as twemproxy do not
   * serve (it closes the connection on them). `touch` leaves the CAS unique
   * alone, so the version returned still guards a later `cas`.
   */
  getAndTouch (key: string, ttl: number): Promise<StoredRecord | undefined> {
    this.saw(ttl)
    if (this.replicas === 1) return readAndTouch(this.client, key, ttl).then(singleRead)
    return this.getReplicated(key, ttl)
  }

  add (key: string, value: string, ttl: number): Promise<boolean> {
    this.saw(ttl)
    if (this.replicas === 1) return this.client.add(key, value, { ttl })
    return this.addReplicated(key, value, ttl)
  }

  cas (key: string, value: string, version: bigint, ttl: number): Promise<CasResult> {
    this.saw(ttl)
    if (this.replicas === 1) return this.client.cas(key, value, version, { ttl })
    return this.casReplicated(key, value, version, ttl)
  }

  touch (key: string, ttl: number): Promise<boolean> {
    this.saw(ttl)
    if (this.replicas === 1) return this.client.touch(key, ttl)
    return this.touchReplicated(key, ttl)
  }

  delete (key: string): Promise<boolean> {
    if (this.replicas === 1) return this.client.delete(key)
    return this.deleteReplicated(key)
  }

  /** Waits for the background repairs started so far (tests, shutdown). */
  async settle (): Promise<void> {
    while (this.pending.size > 0) await Promise.all(this.pending)
  }

  /** Waits for background repairs, then closes the client if this store created it; a client passed in stays open. */
  async close (): Promise<void> {
    await this.settle()
    if (this.ownsClient) await this.client.close()
  }

  /** Per-server health and round trip in ms, from {@link MemcachedClient.ping}; never rejects. */
  async ping (): Promise<Record<string, ServerHealth>> {
    return await this.client.ping()
  }

  private async addReplicated (key: string, value: string, ttl: number): Promise<boolean> {
    const servers = this.usable(this.replicaSet(key))
    const raw = encodeCopy(this.nextStamp(LEGACY), expiry(ttl), value)
    const results = await Promise.allSettled(servers.map(async (server) => await this.guard(server, this.view(server).add(key, raw, { ttl }))))
    const fatal = results.find((result) => result.status === 'rejected' && !failsOver(result.reason))
    if (fatal?.status === 'rejected') throw fatal.reason
    const stored = servers.filter((_, i) => { const result = results[i]; return result?.status === 'fulfilled' && result.value })
    if (results.some((result) => result.status === 'fulfilled' && !result.value)) {
      // The key exists on some replica: an id collision. Our copies must not
      // stand next to another session's, so they go (they are ours: add only
      // writes where nothing was).
      await Promise.allSettled(stored.map(async (server) => await this.view(server).delete(key)))
      return false
    }
    if (stored.length === 0) throw firstError(results)
    return true
  }

  private async casReplicated (key: string, value: string, version: bigint, ttl: number): Promise<CasResult> {
    const { stamp, uniques } = decodeVersion(version)
    const next = this.nextStamp(stamp)
    const op: WriteOp = { key, raw: encodeCopy(next, expiry(ttl), value), ttl, expected: stamp, next }
    const all = this.replicaSet(key)
    const servers = this.usable(all)
    // Commit on the first replica that holds the record: normally the key's
    // own server, whose CAS makes concurrent saves take turns. A replica that
    // fails or lacks the record (restarted empty) hands the turn on.
    const errors: unknown[] = []
    const failed = new Set<string>()
    let committed: string | undefined
    for (const server of servers) {
      let outcome: Outcome
      try {
        outcome = await this.guard(server, this.write(server, op, uniques.get(this.slot(server)), 'commit'))
      } catch (error) {
        if (!failsOver(error)) throw error
        errors.push(error)
        failed.add(server)
        continue
      }
      if (outcome === 'conflict') return 'exists'
      if (outcome === 'dead') return 'not_found'
      if (outcome === 'stored') {
        committed = server
        break
      }
    }
    if (committed === undefined) {
      // Gone only if every replica said so; a silent one may still hold it.
      if (errors.length > 0) throw errors[0]
      if (servers.length < all.length) throw this.unknown(all, servers)
      return 'not_found'
    }
    const followers = servers.filter((server) => server !== committed && !failed.has(server))
    return await this.follow(op, committed, followers, uniques)
  }

  private async touchReplicated (key: string, ttl: number): Promise<boolean> {
    const all = this.replicaSet(key)
    const servers = this.usable(all)
    // The value read with the touch says whether a replica holds a tombstone.
    const copies = await this.readAll(servers, async (view) => (await readAndTouch(view, key, ttl))[0])
    if (copies.some((copy) => copy.kind === 'dead')) {
      this.bury(key, servers, copies)
      return false
    }
    const best = freshest(copies)
    if (best === undefined) return this.miss(copies, all, servers) !== undefined
    this.repair(key, servers, copies, best, ttl)
    return true
  }

  private async deleteReplicated (key: string): Promise<boolean> {
    const servers = this.usable(this.replicaSet(key))
    // A tombstone, not a delete: a replica that missed this (down, or
    // partitioned away) may come back holding the session, and the tombstone
    // on the others is what keeps it dead. The data itself is overwritten.
    const results = await Promise.allSettled(servers.map(async (server) => await this.guard(server, (async () => {
      const view = this.view(server)
      const item = await view.gets(key)
      await view.set(key, TOMBSTONE, { ttl: this.tombstoneTtl })
      return item === undefined ? 'missing' : parseCopy(item.value.toString('utf8'), item.cas).kind
    })())))
    if (!results.some((result) => result.status === 'fulfilled')) throw firstError(results)
    const found = results.flatMap((result) => result.status === 'fulfilled' ? [result.value] : [])
    // As for a load, a tombstone on any replica means the session was
    // destroyed (a logout that reached only that one): it was not live, and
    // regenerate() must not move its data from a live copy elsewhere.
    return found.includes('live') && !found.includes('dead')
  }

  /** Reads every replica (renewing each to `ttl` seconds when given) and returns the freshest copy. */
  private async getReplicated (key: string, ttl: number | undefined): Promise<StoredRecord | undefined> {
    const all = this.replicaSet(key)
    const servers = this.usable(all)
    const copies = await this.readAll(servers, async (view) => ttl === undefined ? await view.gets(key) : (await readAndTouch(view, key, ttl))[0])
    if (copies.some((copy) => copy.kind === 'dead')) {
      this.bury(key, servers, copies)
      return undefined
    }
    const best = freshest(copies)
    if (best === undefined) return this.miss(copies, all, servers)
    const uniques: Array<[number, bigint]> = []
    copies.forEach((copy, i) => {
      if (copy.kind === 'live' && compare(copy.stamp, best.stamp) === 0) uniques.push([this.slot(servers[i] as string), copy.cas])
    })
    if (ttl !== undefined) {
      // Just renewed: a repaired copy gets the same expiry as the others.
      this.repair(key, servers, copies, best, ttl)
    } else {
      // The copy keeps the expiry its writer set (a touch since then only
      // lengthened it): a repaired copy never outlives the original.
      // A value without a stamp (expires -1) has no known expiry: not copied.
      const left = best.expires - nowSeconds()
      if (best.expires === 0 || left >= 1) this.repair(key, servers, copies, best, best.expires === 0 ? 0 : left)
    }
    return { value: best.record, version: encodeVersion(best.stamp, uniques) }
  }

  // Brings every other replica up to the committed write. A replica that
  // fails is left to a later repair; one holding a tombstone means a destroy
  // raced this save, and the destroy wins.
  private async follow (op: WriteOp, committed: string, followers: string[], uniques: Map<number, bigint>): Promise<CasResult> {
    const outcomes = await Promise.all(followers.map(async (server) => {
      try {
        return await this.guard(server, this.write(server, op, uniques.get(this.slot(server)), 'follow'))
      } catch {
        return 'missing' as const
      }
    }))
    if (outcomes.includes('dead')) {
      const written = [committed, ...followers.filter((_, i) => outcomes[i] === 'stored')]
      await Promise.allSettled(written.map(async (server) => await this.view(server).set(op.key, TOMBSTONE, { ttl: this.tombstoneTtl })))
      return 'not_found'
    }
    // A replica holding another write of the same generation: another writer
    // committed elsewhere (a partition, or app instances that disagree on
    // which servers are up). Report a conflict so the plugin re-reads and
    // re-applies this request's changes: overwriting would drop the other's.
    return outcomes.includes('conflict') ? 'exists' : 'stored'
  }

  /**
   * One conditional write on one replica. `commit` writes only over the
   * expected stamp or an older one; `follow` writes over an older generation,
   * adds a missing copy, takes a newer generation as superseding this write
   * (it was built on it) and a sibling of the same generation as a conflict.
   */
  private async write (server: string, op: WriteOp, known: bigint | undefined, mode: 'commit' | 'follow'): Promise<Outcome> {
    const view = this.view(server)
    let cas = known
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      if (cas === undefined) {
        const item = await view.gets(op.key)
        if (item === undefined) {
          if (mode === 'commit') return 'missing'
          if (await view.add(op.key, op.raw, { ttl: op.ttl })) return 'stored'
          continue
        }
        const copy = parseCopy(item.value.toString('utf8'), item.cas)
        if (copy.kind !== 'live') return 'dead'
        if (mode === 'commit' && compare(copy.stamp, op.expected) > 0) return 'conflict'
        if (mode === 'follow') {
          if (copy.stamp.gen > op.next.gen || compare(copy.stamp, op.next) === 0) return 'stored'
          if (copy.stamp.gen === op.next.gen) return 'conflict'
        }
        cas = item.cas
      }
      const result = await view.cas(op.key, op.raw, cas, { ttl: op.ttl })
      if (result === 'stored') return 'stored'
      cas = undefined
    }
    return 'conflict'
  }

  private async readAll (servers: string[], read: (view: MemcachedClient) => Promise<{ value: Buffer, cas: bigint } | undefined>): Promise<Copy[]> {
    return await Promise.all(servers.map(async (server): Promise<Copy> => {
      try {
        const item = await this.guard(server, read(this.view(server)))
        return item === undefined ? { kind: 'missing' } : parseCopy(item.value.toString('utf8'), item.cas)
      } catch (error) {
        return { kind: 'error', error }
      }
    }))
  }

  /**
   * No copy found: a miss only if every replica answered; otherwise the first
   * failure, since the replica that failed (or was skipped) may hold it.
   */
  private miss (copies: Copy[], all: string[], asked: string[]): undefined {
    const failed = copies.find((copy) => copy.kind === 'error')
    if (failed !== undefined) throw failed.error
    if (asked.length < all.length) throw this.unknown(all, asked)
    return undefined
  }

  private unknown (all: string[], asked: string[]): MemcachedError {
    const skipped = all.filter((server) => !asked.includes(server))
    return new MemcachedError('MC_CONNECTION', `replica ${skipped.join(', ')} failed moments ago and may hold the session`, { server: skipped[0] })
  }

  /** Restores missing copies from `best`, in the background, with `add` (never overwriting); `ttl` in seconds. */
  private repair (key: string, servers: string[], copies: Copy[], best: Live, ttl: number): void {
    copies.forEach((copy, i) => {
      if (copy.kind !== 'missing') return
      this.background(servers[i] as string, key, 'repaired', async (view) => await view.add(key, best.raw, { ttl }))
    })
  }

  /** Copies a tombstone seen on one replica onto the others (add where missing, cas over a live copy). */
  private bury (key: string, servers: string[], copies: Copy[]): void {
    copies.forEach((copy, i) => {
      const server = servers[i] as string
      const options = { ttl: this.tombstoneTtl }
      if (copy.kind === 'missing') this.background(server, key, 'buried', async (view) => await view.add(key, TOMBSTONE, options))
      if (copy.kind === 'live' && copy.cas !== 0n) {
        this.background(server, key, 'buried', async (view) => await view.cas(key, TOMBSTONE, copy.cas, options) === 'stored')
      }
    })
  }

  // Background writes never reject: a failure is counted, and the next load
  // that sees the gap tries again.
  private background (server: string, key: string, counter: 'repaired' | 'buried', work: (view: MemcachedClient) => Promise<boolean>): void {
    const id = `${server} ${key}`
    if (this.repairing.has(id)) return
    this.repairing.add(id)
    const task = (async () => {
      try {
        if (await work(this.view(server))) this.counters[counter]++
      } catch {
        this.counters.failed++
      } finally {
        this.repairing.delete(id)
      }
    })()
    this.pending.add(task)
    void task.then(() => { this.pending.delete(task) })
  }

  private replicaSet (key: string): string[] {
    const servers = this.client.serversFor(key, this.replicas)
    if (servers.length === 0) throw new MemcachedError('MC_NO_SERVERS', 'no memcached server available for the session\'s replicas')
    return servers
  }

  /** The replicas not failing lately, or all of them if every one is. */
  private usable (servers: string[]): string[] {
    if (this.suspects.size === 0) return servers
    const now = performance.now()
    const healthy = servers.filter((server) => {
      const until = this.suspects.get(server)
      if (until === undefined) return true
      if (until > now) return false
      this.suspects.delete(server)
      return true
    })
    return healthy.length > 0 ? healthy : servers
  }

  /** Passes `pending` through, marking `server` suspect when it fails like a dead or hanging server. */
  private async guard<T> (server: string, pending: Promise<T>): Promise<T> {
    try {
      return await pending
    } catch (error) {
      if (error instanceof MemcachedError && SUSPECT.has(error.code)) this.suspects.set(server, performance.now() + SUSPECT_MS)
      throw error
    }
  }

  private view (server: string): MemcachedClient {
    let view = this.views.get(server)
    if (view === undefined) {
      view = this.client.forServer(server)
      this.views.set(server, view)
    }
    return view
  }

  private slot (server: string): number {
    return this.slots.get(server) ?? -1
  }

  private nextStamp (after: Stamp): Stamp {
    // Never 0: the legacy stamp is 0.0.
    return { gen: after.gen + 1, tag: randomBytes(8).readBigUInt64BE() | 1n }
  }

  /** Tombstones must outlive any copy, so they get the longest TTL written. */
  private saw (ttl: number): void {
    // 0 is "never expires", longer than any other.
    if (this.tombstoneTtl !== 0 && (ttl === 0 || ttl > this.tombstoneTtl)) this.tombstoneTtl = ttl
  }
}

/** `gets` and `touch` queued in the same tick: the client writes them in one batch. */
function readAndTouch (client: MemcachedClient, key: string, ttl: number): Promise<[CasItem | undefined, boolean]> {
  return Promise.all([client.gets(key), client.touch(key, ttl)])
}

/** The item of a single-copy {@link readAndTouch} as a record. */
function singleRead ([item]: [CasItem | undefined, boolean]): StoredRecord | undefined {
  return single(item)
}

/** A single-copy store's item as a record. */
function single (item: { value: Buffer, cas: bigint } | undefined): StoredRecord | undefined {
  if (item === undefined) return undefined
  const value = item.value.toString('utf8')
  if (value.charCodeAt(0) !== AT) return { value, version: item.cas }
  // Written while replicas was higher: still readable after a downgrade.
  const copy = parseCopy(value, item.cas)
  return copy.kind === 'live' ? { value: copy.record, version: item.cas } : undefined
}

function firstError (results: Array<PromiseSettledResult<unknown>>): unknown {
  const failed = results.find((result) => result.status === 'rejected')
  return failed?.status === 'rejected' ? failed.reason : new MemcachedError('MC_NO_SERVERS', 'no replica answered')
}
