import { MemcachedClient } from '../../protocol/client.js'
import type { CasResult, ServerHealth } from '../../protocol/client.js'
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
  /**
   * Copies of each session kept on distinct servers. Only `1` for now:
   * replication is planned for a later release.
   */
  replicas?: number
}

/**
 * The {@link SessionStore} over memcached: each call is one command of
 * {@link MemcachedClient} (`gets`, `add`, `cas`, `touch`, `delete`), so its
 * CAS unique is the record's version and memcached's expiry is the idle
 * timeout. Values are UTF-8 text.
 */
export class MemcachedStore implements SessionStore {
  /** The client commands go through. */
  readonly client: MemcachedClient
  /** Copies of each record (1: no replication yet). */
  readonly replicas: number
  private readonly ownsClient: boolean

  constructor (options: MemcachedStoreOptions = {}) {
    if (options.client !== undefined && options.servers !== undefined) {
      throw new TypeError('fastify-memcached-session: MemcachedStore takes either client or servers, not both')
    }
    const replicas = options.replicas ?? 1
    if (replicas !== 1) {
      throw new TypeError(`fastify-memcached-session: replicas must be 1 for now (got ${String(replicas)}); replication is coming in a later release`)
    }
    this.replicas = replicas
    this.ownsClient = options.client === undefined
    this.client = options.client ?? new MemcachedClient({ servers: options.servers ?? ['127.0.0.1:11211'] })
  }

  // Each command goes to the key's one server today. Replication will fan
  // the writes out to `replicas` distinct servers here and read from the
  // first that answers, without the plugin noticing.

  async get (key: string): Promise<StoredRecord | undefined> {
    const item = await this.client.gets(key)
    if (item === undefined) return undefined
    return { value: item.value.toString('utf8'), version: item.cas }
  }

  async add (key: string, value: string, ttl: number): Promise<boolean> {
    return await this.client.add(key, value, { ttl })
  }

  async cas (key: string, value: string, version: bigint, ttl: number): Promise<CasResult> {
    return await this.client.cas(key, value, version, { ttl })
  }

  async touch (key: string, ttl: number): Promise<boolean> {
    return await this.client.touch(key, ttl)
  }

  async delete (key: string): Promise<boolean> {
    return await this.client.delete(key)
  }

  /** Closes the client if this store created it; a client passed in stays open. */
  async close (): Promise<void> {
    if (this.ownsClient) await this.client.close()
  }

  /** Per-server health and round trip in ms, from {@link MemcachedClient.ping}; never rejects. */
  async ping (): Promise<Record<string, ServerHealth>> {
    return await this.client.ping()
  }
}
