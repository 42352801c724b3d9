// Loopback port helpers shared by the test helpers and the bench.
import { once } from 'node:events'
import net from 'node:net'

/** A TCP port free on 127.0.0.1 when asked (a caller retries on a race). */
export async function freePort (): Promise<number> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()
  await once(server, 'close')
  if (address === null || typeof address === 'string') throw new Error('no free port')
  return address.port
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
export async function canConnect (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { resolve(false) })
  })
}
