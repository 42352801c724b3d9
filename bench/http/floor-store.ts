/**
 * The floor of any memcached session store: our MemoryStore, plus one bare
 * round trip to memcached per store call. The round trip is memcached's
 * meta no-op (`mn`, answered `MN`), batched per tick the way our client
 * batches, over a raw socket that reads into one reused buffer and parses
 * nothing: the least a client can do and still wait for memcached. What a
 * real client costs on top of this is its own overhead; what this costs on
 * top of MemoryStore is the network, the kernel and the event loop.
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
  /** Callers of the requests already written, oldest first. */
  private written: Array<() => void> = []
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

  private readonly flush = (): void => {
    this.flushScheduled = false
    const batch = this.queued
    this.queued = []
    this.written.push(...batch)
    this.socket.write(batch.length === 1 ? NOOP : Buffer.concat(batch.map(() => NOOP)))
  }

  private onBytes (bytes: number): void {
    this.pendingBytes += bytes
    const replies = Math.floor(this.pendingBytes / REPLY_BYTES)
    this.pendingBytes -= replies * REPLY_BYTES
    const done = this.written.splice(0, replies)
    for (const resolve of done) resolve()
  }

  close (): void {
    this.socket.destroy()
    for (const resolve of [...this.written, ...this.queued]) resolve()
  }
}

/** A {@link SessionStore}: MemoryStore's answers, each after one bare memcached round trip. */
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

  async add (key: string, value: string, ttl: number): Promise<boolean> {
    await this.trips.trip()
    return await this.memory.add(key, value, ttl)
  }

  async cas (key: string, value: string, version: bigint, ttl: number): Promise<CasResult> {
    await this.trips.trip()
    return await this.memory.cas(key, value, version, ttl)
  }

  async touch (key: string, ttl: number): Promise<boolean> {
    await this.trips.trip()
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
