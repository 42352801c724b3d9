import { Buffer } from 'node:buffer'
import { MemcachedError } from '../../protocol/errors.js'
import type { CasResult, ServerHealth } from '../../protocol/client.js'
import type { SessionStore, StoredRecord } from './store.js'

/** Options of {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /**
   * Cap on the bytes held (keys plus values, UTF-8). Past it the least
   * recently used records are evicted, as memcached does when full.
   * Default: no cap.
   */
  maxBytes?: number
  /**
   * Largest value accepted, bytes; a larger one rejects with `MC_TOO_LARGE`
   * and leaves the old record intact, like memcached's item size limit.
   * Default 1 MiB (1_048_576).
   */
  maxValueSize?: number
  /**
   * How often expired records are swept, ms. The timer is unref'd: it never
   * keeps the process alive. Default 60_000.
   */
  sweepInterval?: number
}

interface Entry {
  value: string
  version: bigint
  /** Epoch ms after which the entry is gone; `Infinity` for ttl 0. */
  expiresAt: number
  bytes: number
}

const DEFAULT_MAX_VALUE_SIZE = 1_048_576
const DEFAULT_SWEEP_INTERVAL = 60_000

function checkLimit (name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new TypeError(`fastify-memcached-session: MemoryStore ${name} must be a positive integer, got ${String(value)}`)
  }
  return value
}

/**
 * The in-process {@link SessionStore}, for development, tests and as the
 * benchmark baseline. It keeps serialized strings, never live objects, and
 * answers add/cas/touch/delete and expiry exactly like memcached, so an app
 * behaves the same when it moves to {@link MemcachedStore}. Sessions are lost
 * when the process exits and are not shared between processes.
 */
export class MemoryStore implements SessionStore {
  private readonly entries = new Map<string, Entry>()
  private readonly maxBytes: number
  private readonly maxValueSize: number
  private readonly timer: NodeJS.Timeout
  // Like memcached's CAS uniques: one counter for the whole store, so a
  // deleted and re-added key never gets back a version a reader still holds.
  private nextVersion = 1n
  private bytes = 0

  constructor (options: MemoryStoreOptions = {}) {
    this.maxBytes = checkLimit('maxBytes', options.maxBytes, Number.POSITIVE_INFINITY)
    this.maxValueSize = checkLimit('maxValueSize', options.maxValueSize, DEFAULT_MAX_VALUE_SIZE)
    const interval = checkLimit('sweepInterval', options.sweepInterval, DEFAULT_SWEEP_INTERVAL)
    this.timer = setInterval(() => { this.sweep() }, interval)
    this.timer.unref()
  }

  /** Number of records held, expired ones not yet swept included. */
  get size (): number {
    return this.entries.size
  }

  /** Bytes held (keys plus values, UTF-8), as counted against `maxBytes`. */
  get byteSize (): number {
    return this.bytes
  }

  async get (key: string): Promise<StoredRecord | undefined> {
    const entry = this.live(key)
    if (entry === undefined) return undefined
    this.bump(key, entry)
    return { value: entry.value, version: entry.version }
  }

  async getAndTouch (key: string, ttl: number): Promise<StoredRecord | undefined> {
    const entry = this.live(key)
    if (entry === undefined) return undefined
    entry.expiresAt = expiry(ttl)
    this.bump(key, entry)
    return { value: entry.value, version: entry.version }
  }

  async add (key: string, value: string, ttl: number): Promise<boolean> {
    const bytes = this.measure(key, value)
    if (this.live(key) !== undefined) return false
    this.write(key, value, ttl, bytes)
    return true
  }

  async cas (key: string, value: string, version: bigint, ttl: number): Promise<CasResult> {
    const bytes = this.measure(key, value)
    const entry = this.live(key)
    if (entry === undefined) return 'not_found'
    if (entry.version !== version) return 'exists'
    this.write(key, value, ttl, bytes)
    return 'stored'
  }

  async touch (key: string, ttl: number): Promise<boolean> {
    const entry = this.live(key)
    if (entry === undefined) return false
    entry.expiresAt = expiry(ttl)
    this.bump(key, entry)
    return true
  }

  async delete (key: string): Promise<boolean> {
    const entry = this.live(key)
    if (entry === undefined) return false
    this.remove(key, entry)
    return true
  }

  /** Stops the sweep timer and drops every record. */
  async close (): Promise<void> {
    clearInterval(this.timer)
    this.entries.clear()
    this.bytes = 0
  }

  /** Always healthy while the process runs: one entry, `memory`, with zero latency. */
  async ping (): Promise<Record<string, ServerHealth>> {
    return { memory: { ok: true, ejected: false, latencyMs: 0 } }
  }

  /** Removes every expired record now (the timer does it periodically). */
  sweep (): void {
    const now = Date.now()
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt <= now) this.remove(key, entry)
    }
  }

  /** Throws before anything changes, so a too-large write keeps the old record. */
  private measure (key: string, value: string): number {
    const valueBytes = Buffer.byteLength(value)
    if (valueBytes > this.maxValueSize) {
      throw new MemcachedError('MC_TOO_LARGE', `value of ${valueBytes} bytes exceeds maxValueSize ${this.maxValueSize}`)
    }
    return Buffer.byteLength(key) + valueBytes
  }

  private live (key: string): Entry | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt > Date.now()) return entry
    this.remove(key, entry)
    return undefined
  }

  private write (key: string, value: string, ttl: number, bytes: number): void {
    const old = this.entries.get(key)
    if (old !== undefined) this.remove(key, old)
    const entry: Entry = { value, version: this.nextVersion++, expiresAt: expiry(ttl), bytes }
    this.entries.set(key, entry)
    this.bytes += bytes
    this.evict()
  }

  // Map iteration order is insertion order: re-inserting on use keeps the
  // least recently used entry first, which is the one eviction drops.
  private bump (key: string, entry: Entry): void {
    this.entries.delete(key)
    this.entries.set(key, entry)
  }

  private evict (): void {
    for (const [key, entry] of this.entries) {
      if (this.bytes <= this.maxBytes) return
      this.remove(key, entry)
    }
  }

  private remove (key: string, entry: Entry): void {
    this.entries.delete(key)
    this.bytes -= entry.bytes
  }
}

/** Relative seconds to epoch ms; 0 never expires, as in memcached. */
function expiry (ttl: number): number {
  return ttl === 0 ? Number.POSITIVE_INFINITY : Date.now() + ttl * 1000
}
