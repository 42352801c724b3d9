// Starts a throwaway memcached for the example app on a free port, if the
// binary is installed. The example's concern is sessions, not this file.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import net from 'node:net'

/** A memcached process this example started, and how to stop it. */
export interface LocalMemcached {
  /** `'127.0.0.1:port'`, for the plugin's `servers` option. */
  address: string
  stop: () => void
}

async function freePort (): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (address === null || typeof address === 'string') throw new Error('no free port')
  return address.port
}

async function listening (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { resolve(false) })
  })
}

/** Starts memcached on a free port; `undefined` when the binary is missing. */
export async function startLocalMemcached (): Promise<LocalMemcached | undefined> {
  if (spawnSync('sh', ['-c', 'command -v memcached']).status !== 0) return undefined
  const port = await freePort()
  const args = ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', '64']
  if (process.getuid?.() === 0) args.push('-u', 'root')
  const child: ChildProcess = spawn('memcached', args, { stdio: 'ignore' })
  const stop = (): void => { child.kill() }
  process.once('exit', stop)
  for (let waited = 0; waited < 5000; waited += 50) {
    if (await listening(port)) return { address: `127.0.0.1:${port}`, stop }
    if (child.exitCode !== null) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  stop()
  return undefined
}
