/**
 * The floor of any memcached session store: our MemoryStore, plus one bare
 * round trip to memcached for each request's load and for each write. The
 * round trip is one memcached meta no-op (`mn`, answered `MN`) per tick for
 * all the calls of that tick, over a raw socket that reads into one reused
 * buffer and parses nothing: the least a client can do and still wait for
 * memcached (a real store sends at least one command per tick and reads the
 * data back). Renewing the expiry costs no round trip of its own: a store
 * can send it with the load (`getAndTouch`: `gets` and `touch` in one
 * batch). So a read-only request costs the floor one round trip and a
 * read-write one two. What a real client costs on top of this is its own
 * overhead; what this costs on top of MemoryStore is the network, the kernel
 * and the event loop.
 */
import { Buffer } from 'node:buffer'
import { once } from 'node:events'
import net from 'node:net'
import type { CasResult, ServerHealth } from '../../src/protocol/client.js'
import { MemoryStore, type SessionStore, type StoredRecord } from '../../src/index.js'

const NOOP = Buffer.from('mn\r\n')
/** `MN\r\n`: every reply has this length, so replies are counted, not parsed. */
const REPLY_BYTES = 4

class RoundTrips {
  /** One batch per no-op written, oldest first: the callers its reply releases. */
  private written: Array<Array<() => void>> = []
  private queued: Array<() => void> = []
  private flushScheduled = false
  private pendingBytes = 0

  private readonly socket: net.Socket

  private constructor (address: string) {
    const [host, port] = address.split(':') as [string, string]
    this.socket = net.connect({
      host,
      port: Number(port),
      noDelay: true,
      onread: { buffer: Buffer.allocUnsafe(64 * 1024), callback: (bytes) => { this.onBytes(bytes); return true } }
    })
  }

  static async connect (address: string): Promise<RoundTrips> {
    const trips = new RoundTrips(address)
    await once(trips.socket, 'connect')
    return trips
  }

  async trip (): Promise<void> {
    await new Promise<void>((resolve) => {
      this.queued.push(resolve)
      if (this.flushScheduled) return
      this.flushScheduled = true
      setImmediate(this.flush)
    })
  }

  /** One no-op for every caller of the tick: the least a round trip can be. */
  private readonly flush = (): void => {
    this.flushScheduled = false
    this.written.push(this.queued)
    this.queued = []
    this.socket.write(NOOP)
  }

  private onBytes (bytes: number): void {
    this.pendingBytes += bytes
    for (; this.pendingBytes >= REPLY_BYTES; this.pendingBytes -= REPLY_BYTES) {
      for (const resolve of this.written.shift() ?? []) resolve()
    }
  }

  close (): void {
    this.socket.destroy()
    for (const resolve of [...this.written.flat(), ...this.queued]) resolve()
  }
}

/** A {@link SessionStore}: MemoryStore's answers, each load and each write after one bare memcached round trip. */
export class RoundTripFloorStore implements SessionStore {
  private readonly memory = new MemoryStore()

  private constructor (private readonly trips: RoundTrips) {}

  static async connect (address: string): Promise<RoundTripFloorStore> {
    return new RoundTripFloorStore(await RoundTrips.connect(address))
  }

  async get (key: string): Promise<StoredRecord | undefined> {
    await this.trips.trip()
    return await this.memory.get(key)
  }

  /** The load that renews: one round trip, like any store that sends `gets` and `touch` together. */
  async getAndTouch (key: string, ttl: number): Promise<StoredRecord | undefined> {
    await this.trips.trip()
    return await this.memory.getAndTouch(key, ttl)
  }

  async add (key: string, value: string, ttl: number): Promise<boolean> {
    await this.trips.trip()
    return await this.memory.add(key, value, ttl)
  }

  async cas (key: string, value: string, version: bigint, ttl: number): Promise<CasResult> {
    await this.trips.trip()
    return await this.memory.cas(key, value, version, ttl)
  }

  /** No round trip of its own: a store can send it with the load (see {@link getAndTouch}). */
  async touch (key: string, ttl: number): Promise<boolean> {
    return await this.memory.touch(key, ttl)
  }

  async delete (key: string): Promise<boolean> {
    await this.trips.trip()
    return await this.memory.delete(key)
  }

  async ping (): Promise<Record<string, ServerHealth>> {
    return {}
  }

  async close (): Promise<void> {
    this.trips.close()
    await this.memory.close()
  }
}
