// How the connection sizes the buffer socket reads go into. Values are views
// of a read only when it fills nearly half of its buffer (parser.ts), so the size
// decides whether a large reply's values are copied one by one or not.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { MAX_READ_BYTES, MIN_READ_BYTES, readBufferSize } from '../../src/protocol/connection.js'

// What loopback TCP delivers at most per segment (MTU 65,536): one 100-key
// get of 1 KiB values arrives as this and about 40 KiB more.
const LOOPBACK_SEGMENT = 65_483

test('read buffer: a read that fills it doubles it, up to MAX_READ_BYTES', () => {
  assert.equal(readBufferSize(MIN_READ_BYTES, MIN_READ_BYTES), 2 * MIN_READ_BYTES)
  assert.equal(readBufferSize(2 * MIN_READ_BYTES, 2 * MIN_READ_BYTES), 4 * MIN_READ_BYTES)
  assert.equal(readBufferSize(MAX_READ_BYTES, MAX_READ_BYTES), MAX_READ_BYTES)
})

test('read buffer: it shrinks back once reads stop filling half of it, so their values can be views', () => {
  // Grown to 128 KiB by one full read, it must not stay there while every
  // read is one loopback segment: none would fill half of it.
  assert.equal(readBufferSize(2 * MIN_READ_BYTES, LOOPBACK_SEGMENT), MIN_READ_BYTES)
  assert.ok(LOOPBACK_SEGMENT >= MIN_READ_BYTES / 2, 'a segment fills half of the smallest buffer')
  assert.equal(readBufferSize(MAX_READ_BYTES, 1024), MIN_READ_BYTES)
  assert.equal(readBufferSize(MAX_READ_BYTES, 100_000), 2 * MIN_READ_BYTES)
})

test('read buffer: a read filling half of it or more keeps its size; it never goes below MIN_READ_BYTES', () => {
  assert.equal(readBufferSize(MAX_READ_BYTES, MAX_READ_BYTES / 2), MAX_READ_BYTES)
  assert.equal(readBufferSize(2 * MIN_READ_BYTES, MIN_READ_BYTES), 2 * MIN_READ_BYTES)
  assert.equal(readBufferSize(MIN_READ_BYTES, 1), MIN_READ_BYTES)
  assert.equal(readBufferSize(MIN_READ_BYTES, 0), MIN_READ_BYTES)
})
