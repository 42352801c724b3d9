// diagnostics_channel tracing of client commands: subscribers see start,
// end and error events with sizes but never values; nothing is published
// while nobody subscribes.
import assert from 'node:assert/strict'
import diagnosticsChannel from 'node:diagnostics_channel'
import { test } from 'node:test'
import type { CommandTrace } from '../../src/protocol/diagnostics.js'
import { useMemcached } from '../helpers/shared-memcached.js'

const channels = diagnosticsChannel.tracingChannel<unknown, CommandTrace>('fastify-memcached-session:command')
const memcached = useMemcached()

test('subscribers see every command with its server, key count and byte sizes, never the value', async () => {
  const seen: Array<{ event: string, trace: CommandTrace }> = []
  const record = (event: string) => (message: unknown) => { seen.push({ event, trace: { ...(message as CommandTrace) } }) }
  const handlers = { start: record('start'), end: record('end'), asyncStart: record('asyncStart'), asyncEnd: record('asyncEnd'), error: record('error') }
  channels.subscribe(handlers)
  try {
    await memcached.client.set('traced', 'secret-value-1234')
    await memcached.client.get('traced')
    await memcached.client.gets('traced')
    await memcached.client.getMulti(['traced', 'missing'])
    await memcached.client.set('text', 'abc')
    await memcached.client.incr('text').catch(() => {})
    await memcached.client.version()
  } finally {
    channels.unsubscribe(handlers)
  }
  const ends = seen.filter((entry) => entry.event === 'asyncEnd').map((entry) => entry.trace)
  assert.deepEqual(ends.map((trace) => trace.command), ['set', 'get', 'gets', 'get', 'set', 'incr', 'version'])
  assert.deepEqual(ends[0], { command: 'set', server: memcached.server.address, keys: 1, bytesOut: 17, bytesIn: 0 })
  assert.equal(ends[1]?.bytesIn, 17)
  assert.equal(ends[2]?.bytesIn, 17)
  assert.equal(ends[3]?.keys, 2)
  assert.equal(ends[6]?.keys, 0)
  const errors = seen.filter((entry) => entry.event === 'error')
  assert.equal(errors.length, 1)
  assert.equal((errors[0]?.trace.error as { code?: string }).code, 'MC_CLIENT_ERROR')
  assert.equal(seen.filter((entry) => entry.event === 'start').length, 7)
  assert.ok(!JSON.stringify(seen.map((entry) => ({ ...entry.trace, error: undefined }))).includes('secret-value'), 'no value in any payload')
})

test('nothing is published while nobody subscribes', async () => {
  assert.equal(channels.hasSubscribers, false)
  const publish = channels.start.publish
  let published = 0
  channels.start.publish = (message: unknown) => { published++; publish.call(channels.start, message) }
  try {
    await memcached.client.set('quiet', 'x')
    await memcached.client.get('quiet')
    await memcached.client.getMulti(['quiet'])
  } finally {
    channels.start.publish = publish
  }
  assert.equal(published, 0)
})
