/**
 * The promise floor: the least any client whose commands return a promise
 * does per command, measured through the same loops as the clients. Under
 * it is the ceiling's socket (one reused read buffer, pre-built requests);
 * on top, only what that API cannot do without:
 *
 * - a promise per command, settled from a FIFO of callers in reply order;
 * - for a get, a copy of the value into a Buffer of its own (a view of the
 *   read buffer would be overwritten by the next read);
 * - the commands of one tick written together: at the end of the tick when
 *   nothing is in flight, else once per turn of the event loop.
 *
 * It parses nothing (replies have a known length), checks only each reply's
 * last bytes, as the ceiling does, and looks no key up in its reply. So no
 * client with a promise per command can do less; the ratio it reaches
 * against the ceiling bounds what any such client can reach.
 */
import { Buffer } from 'node:buffer'
import type net from 'node:net'
import { MemcachedError } from '../../src/index.js'
import { CallerQueue } from './callers.js'
import { connectReading } from './raw.js'

const RESOLVED = Promise.resolve()

/** One kind of command the floor sends: its request per key and the exact reply to each. */
export interface FloorCommand {
  /** The request for `key` (built once per key). */
  request: (key: string) => Buffer
  replyBytes: number
  /** How every reply ends. */
  end: Buffer
  /** Where each reply's value starts, and its length; 0 bytes: the command resolves undefined. */
  valueAt: number
  valueBytes: number
}

/** `get <key>` of items of `valueBytes` bytes with flags 0, keys of `keyBytes` bytes. */
export function floorGet (keyBytes: number, valueBytes: number): FloorCommand {
  const header = `VALUE ${'k'.repeat(keyBytes)} 0 ${valueBytes}\r\n`.length
  const end = Buffer.from('END\r\n')
  return { request: (key) => Buffer.from(`get ${key}\r\n`), replyBytes: header + valueBytes + 2 + end.length, end, valueAt: header, valueBytes }
}

/** `set <key> 0 0 <bytes>` of `value`, answered `STORED`. */
export function floorSet (value: Buffer): FloorCommand {
  const end = Buffer.from('STORED\r\n')
  return { request: (key) => Buffer.concat([Buffer.from(`set ${key} 0 0 ${value.length}\r\n`), value, Buffer.from('\r\n')]), replyBytes: end.length, end, valueAt: 0, valueBytes: 0 }
}

export class PromiseFloor {
  private readonly requests = new Map<string, Buffer>()
  private pending: Buffer[] = []
  private readonly callers = new CallerQueue<Buffer>()
  private flushScheduled = false
  /** Bytes of the current reply read so far, and its value. */
  private replyRead = 0
  private value: Buffer | undefined
  /** The current reply's last bytes differ from the command's `end`. */
  private malformed = false

  private constructor (private readonly socket: net.Socket, private readonly command: FloorCommand) {}

  /** Connects to memcached, to send `command` only. */
  static async connect (host: string, port: number, command: FloorCommand): Promise<PromiseFloor> {
    // The socket's read callback needs the floor, which needs the socket.
    const created: { floor?: PromiseFloor } = {}
    const socket = await connectReading(host, port, (read, bytes) => created.floor?.onRead(read, bytes))
    return (created.floor = new PromiseFloor(socket, command))
  }

  /** One promise per command, the caller's own: no async wrapper around it. */
  send (key: string): Promise<Buffer | undefined> {
    let request = this.requests.get(key)
    if (request === undefined) {
      request = this.command.request(key)
      this.requests.set(key, request)
    }
    this.pending.push(request)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      if (this.callers.size === 0) void RESOLVED.then(this.flush)
      else setImmediate(this.flush)
    }
    return this.callers.add()
  }

  close (): void {
    this.socket.destroy()
  }

  private readonly flush = (): void => {
    this.flushScheduled = false
    const pending = this.pending
    if (pending.length === 0) return
    this.pending = []
    this.socket.write(pending.length === 1 ? pending[0] as Buffer : Buffer.concat(pending))
  }

  private onRead (read: Buffer, bytes: number): void {
    const { replyBytes, valueBytes } = this.command
    for (let at = 0; at < bytes;) {
      if (this.replyRead === 0 && valueBytes > 0) this.value = Buffer.allocUnsafe(valueBytes)
      const take = Math.min(bytes - at, replyBytes - this.replyRead)
      if (valueBytes > 0) this.copyValue(read, at, take)
      this.checkEnd(read, at, take)
      this.replyRead += take
      at += take
      if (this.replyRead === replyBytes) this.settle()
    }
  }

  /** Copies the part of the value among the `take` bytes of the reply at `at` in `read`. */
  private copyValue (read: Buffer, at: number, take: number): void {
    const { valueAt, valueBytes } = this.command
    const from = Math.max(this.replyRead, valueAt)
    const to = Math.min(this.replyRead + take, valueAt + valueBytes)
    if (to > from) read.copy(this.value as Buffer, from - valueAt, at + from - this.replyRead, at + to - this.replyRead)
  }

  /** Compares the part of the reply's last bytes among the `take` bytes at `at` with the command's `end`. */
  private checkEnd (read: Buffer, at: number, take: number): void {
    const end = this.command.end
    const endStart = this.command.replyBytes - end.length
    for (let i = Math.max(this.replyRead, endStart); i < this.replyRead + take; i++) {
      if (read[at + i - this.replyRead] !== end[i - endStart]) this.malformed = true
    }
  }

  private settle (): void {
    this.replyRead = 0
    if (!this.malformed) return this.callers.settle(this.value)
    this.malformed = false
    this.callers.settle(undefined, new MemcachedError('MC_PROTOCOL', `promise floor: a reply did not end with ${JSON.stringify(this.command.end.toString())}`))
  }
}
