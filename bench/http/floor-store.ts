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
 *
 * A second floor, {@link FloorStore.sessionWork}, makes memcached do the
 * session's own work instead of a no-op: each load sends the `gets` and
 * `touch` a store sends, each write a `set` of the record, still followed by
 * one `mn` per tick whose `MN` marks the end of the tick's replies (found,
 * not parsed). Its difference to the first is memcached's work for those
 * commands, which shares a core with the load generator, and the bytes.
 */
import { Buffer } from 'node:buffer'
import { once } from 'node:events'
import net from 'node:net'
import type { CasResult, ServerHealth } from '../../src/protocol/client.js'
import { exptime } from '../../src/protocol/commands.js'
import { MemoryStore, type SessionStore, type StoredRecord } from '../../src/index.js'

const NOOP = Buffer.from('mn\r\n')
/** `MN\r\n`: every reply has this length, so replies are counted, not parsed. */
const REPLY_BYTES = 4
/** What ends the replies to a tick's commands in the session-work floor. */
const MARKER = Buffer.from('MN\r\n')

class RoundTrips {
  /** One batch per no-op written, oldest first: the callers its reply releases. */
  private written: Array<Array<() => void>> = []
  private queued: Array<() => void> = []
  /** The session-work floor's commands of this tick, sent before its no-op. */
  private commands = ''
  private flushScheduled = false
  private pendingBytes = 0
  /** Session-work floor: bytes of {@link MARKER} that ended the last read. */
  private markerBytes = 0

  private readonly socket: net.Socket
  private readonly readBuffer = Buffer.allocUnsafe(64 * 1024)

  /** `withCommands`: callers send commands, whose replies end at the tick's `MN`; otherwise every reply is a bare `MN`. */
  private constructor (address: string, withCommands: boolean) {
    const [host, port] = address.split(':') as [string, string]
    this.socket = net.connect({
      host,
      port: Number(port),
      noDelay: true,
      onread: { buffer: this.readBuffer, callback: (bytes) => { if (withCommands) this.findMarkers(bytes); else this.onBytes(bytes); return true } }
    })
  }

  static async connect (address: string, withCommands = false): Promise<RoundTrips> {
    const trips = new RoundTrips(address, withCommands)
    await once(trips.socket, 'connect')
    return trips
  }

  /** One round trip, with `commands` (session-work floor only) written ahead of the tick's no-op. */
  async trip (commands = ''): Promise<void> {
    await new Promise<void>((resolve) => {
      this.queued.push(resolve)
      this.commands += commands
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
    if (this.commands === '') {
      this.socket.write(NOOP)
    } else {
      this.socket.write(`${this.commands}mn\r\n`)
      this.commands = ''
    }
  }

  private onBytes (bytes: number): void {
    this.pendingBytes += bytes
    for (; this.pendingBytes >= REPLY_BYTES; this.pendingBytes -= REPLY_BYTES) this.release()
  }

  /**
   * Session-work floor: each `MN\r\n` ends a tick's replies. No session
   * record or reply line ends in `MN` (records end in `}`, VALUE lines in a
   * digit), so it is found by searching, without parsing the replies; a
   * marker may be split across reads.
   */
  private findMarkers (bytes: number): void {
    const read = this.readBuffer.subarray(0, bytes)
    let from = 0
    if (this.markerBytes > 0) {
      // The marker the last read ended with a part of: this read goes on with it, or it was none.
      const rest = Math.min(MARKER.length - this.markerBytes, bytes)
      if (read.compare(MARKER, this.markerBytes, this.markerBytes + rest, 0, rest) !== 0) {
        this.markerBytes = 0
      } else if ((this.markerBytes += rest) < MARKER.length) {
        return
      } else {
        this.markerBytes = 0
        this.release()
        from = rest
      }
    }
    for (let at = read.indexOf(MARKER, from); at !== -1; at = read.indexOf(MARKER, from)) {
      this.release()
      from = at + MARKER.length
    }
    for (let kept = Math.min(MARKER.length - 1, bytes - from); kept > 0; kept--) {
      if (read.compare(MARKER, 0, kept, bytes - kept, bytes) === 0) {
        this.markerBytes = kept
        break
      }
    }
  }

  private release (): void {
    for (const resolve of this.written.shift() ?? []) resolve()
  }

  close (): void {
    this.socket.destroy()
    for (const resolve of [...this.written.flat(), ...this.queued]) resolve()
  }
}

/** The commands a floor store has memcached run for each store call, ahead of the tick's no-op. */
interface FloorWork {
  load: (key: string) => string
  loadAndRenew: (key: string, ttl: number) => string
  write: (key: string, value: string, ttl: number) => string
  remove: (key: string) => string
}

/** The bare floor: nothing but the tick's no-op. */
const NO_WORK: FloorWork = { load: () => '', loadAndRenew: () => '', write: () => '', remove: () => '' }

/**
 * The session-work floor: `gets` and `touch` for a load that renews, `gets`
 * for one that does not, a `set` of the record for each write (`add` and
 * `cas` alike), `delete` for a delete.
 */
const SESSION_WORK: FloorWork = {
  load: (key) => `gets ${key}\r\n`,
  loadAndRenew: (key, ttl) => `gets ${key}\r\ntouch ${key} ${exptime(ttl)}\r\n`,
  write: (key, value, ttl) => `set ${key} 0 ${exptime(ttl)} ${Buffer.byteLength(value)}\r\n${value}\r\n`,
  remove: (key) => `delete ${key}\r\n`
}

/**
 * The fewest commands a rolling store can send: `gat` loads and renews in
 * one (`gets` and `touch` are two), so a write costs a second command only.
 * It is what a store on memcached 1.5.3 or later, with no proxy in between,
 * could send (twemproxy does not forward `gat`).
 */
const FEWEST_COMMANDS: FloorWork = {
  ...SESSION_WORK,
  loadAndRenew: (key, ttl) => `gat ${exptime(ttl)} ${key}\r\n`
}

/**
 * A {@link SessionStore}: MemoryStore's answers, each load and each write
 * after one memcached round trip per tick that does `work`.
 */
export class FloorStore implements SessionStore {
  private readonly memory = new MemoryStore()

  private constructor (private readonly trips: RoundTrips, private readonly work: FloorWork) {}

  /** The floor of any memcached store: one bare round trip per load and per write. */
  static async bare (address: string): Promise<FloorStore> {
    return new FloorStore(await RoundTrips.connect(address), NO_WORK)
  }

  /**
   * The floor of a store whose client does nothing but write the session's
   * commands and wait: what ours can reach; with `fewest`, `gat` instead of
   * `gets` and `touch` (see {@link FEWEST_COMMANDS}).
   */
  static async sessionWork (address: string, fewest = false): Promise<FloorStore> {
    return new FloorStore(await RoundTrips.connect(address, true), fewest ? FEWEST_COMMANDS : SESSION_WORK)
  }

  async get (key: string): Promise<StoredRecord | undefined> {
    await this.trips.trip(this.work.load(key))
    return await this.memory.get(key)
  }

  /** The load that renews: one round trip, like any store that sends `gets` and `touch` together. */
  async getAndTouch (key: string, ttl: number): Promise<StoredRecord | undefined> {
    await this.trips.trip(this.work.loadAndRenew(key, ttl))
    return await this.memory.getAndTouch(key, ttl)
  }

  async add (key: string, value: string, ttl: number): Promise<boolean> {
    await this.trips.trip(this.work.write(key, value, ttl))
    return await this.memory.add(key, value, ttl)
  }

  async cas (key: string, value: string, version: bigint, ttl: number): Promise<CasResult> {
    await this.trips.trip(this.work.write(key, value, ttl))
    return await this.memory.cas(key, value, version, ttl)
  }

  /** No round trip of its own: a store can send it with the load (see {@link getAndTouch}). */
  async touch (key: string, ttl: number): Promise<boolean> {
    return await this.memory.touch(key, ttl)
  }

  async delete (key: string): Promise<boolean> {
    await this.trips.trip(this.work.remove(key))
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
