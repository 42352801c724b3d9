/**
 * `npm run bench [-- --quick] [-- --only=client|http]`: how much memcached
 * costs compared with sessions in process memory, and how we compare with
 * the alternatives. Progress goes to stderr; the summary to stdout; results
 * to bench/results/latest.{json,md,svg}.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { runClientSuite } from './client/suite.js'
import { runHttpSuite } from './http/suite.js'
import { parseArgs, type BenchConfig } from './lib/config.js'
import { choosePinning, describeMachine, machineLine } from './lib/machine.js'
import { killAll, pinSelf } from './lib/processes.js'
import { renderMarkdown, type BenchResult } from './lib/report.js'
import { CLIENT_SCENARIOS } from './client/workload.js'
import { REDIS_BINARY, nutcrackerVersion, startMemcached, startRedis, startTwemproxy, type ServerProcess } from './lib/servers.js'
import { progress } from './lib/stats.js'
import { renderSvg } from './lib/svg.js'
import { clientTargets, httpTargets, targetLines } from './lib/targets.js'

const servers: ServerProcess[] = []

async function stopServers (): Promise<void> {
  await Promise.all(servers.splice(0).map(async (server) => await server.stop()))
}

function onSignal (signal: NodeJS.Signals): void {
  progress(`${signal}: stopping every process the bench started`)
  killAll()
  process.exit(signal === 'SIGINT' ? 130 : 143)
}

function writeResults (config: BenchConfig, result: BenchResult): string[] {
  mkdirSync(config.outDir, { recursive: true })
  const json = `${JSON.stringify(result, null, 2)}\n`
  const markdown = renderMarkdown(result)
  const svg = renderSvg(result)
  // latest.* is the last run; quick.* / full.* keep the last run of each mode
  // (of both suites) side by side.
  const names = result.client !== undefined && result.http !== undefined && config.only === undefined ? ['latest', result.mode] : ['latest']
  const files = names.flatMap((name): Array<[string, string]> => [[`${name}.json`, json], [`${name}.md`, markdown], [`${name}.svg`, svg]])
  return files.map(([name, text]) => {
    const file = path.join(config.outDir, name)
    writeFileSync(file, text)
    return file
  })
}

async function main (): Promise<void> {
  const config = parseArgs(process.argv.slice(2))
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const started = Date.now()
  const pinning = choosePinning()
  if (pinning.measured !== undefined && !pinSelf(pinning.measured)) progress('could not pin this process; going on unpinned')
  const machine = describeMachine(pinning)
  progress(`machine: ${machineLine(machine)}`)
  progress(`pinning: ${pinning.description}`)
  const notes: string[] = []

  const memcached = await startMemcached(pinning.load)
  servers.push(memcached)
  progress(`memcached ${machine.memcached} on ${memcached.address} (pid ${memcached.pid ?? '?'})`)
  let redis: ServerProcess | undefined
  if (config.suites.includes('http')) {
    if (REDIS_BINARY === undefined) {
      notes.push('@fastify/session + connect-redis: skipped: redis-server not found')
      progress('redis: skipped: redis-server not found')
    } else {
      redis = await startRedis(pinning.load)
      servers.push(redis)
      progress(`redis-server ${machine.redis} on ${redis.address} (pid ${redis.pid ?? '?'})`)
    }
  }

  const result: BenchResult = {
    schema: 1,
    date: new Date(started).toISOString(),
    mode: config.quick ? 'quick' : 'full',
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    durationSec: 0,
    machine,
    targets: [],
    notes
  }
  try {
    if (config.suites.includes('client')) {
      let proxy: ServerProcess | undefined
      if (CLIENT_SCENARIOS.some((scenario) => scenario.viaProxy === true && (config.only?.has(scenario.id) ?? true))) {
        proxy = await startTwemproxy(pinning.load, memcached.address)
        servers.push(proxy)
        progress(`twemproxy ${nutcrackerVersion()} on ${proxy.address} in front of memcached (pid ${proxy.pid ?? '?'})`)
      }
      result.client = await runClientSuite({ host: '127.0.0.1', port: memcached.port, address: memcached.address }, config.client, config.only, pinning.measured,
        proxy === undefined ? undefined : { host: '127.0.0.1', port: proxy.port })
      result.targets.push(...clientTargets(result.client))
    }
    if (config.suites.includes('http')) {
      result.http = await runHttpSuite(config, { memcached: memcached.address, redis: redis?.address }, pinning)
      result.targets.push(...httpTargets(result.http))
    }
  } finally {
    await stopServers()
  }
  result.durationSec = (Date.now() - started) / 1000
  const files = writeResults(config, result)
  process.stdout.write(`\n${renderMarkdown(result)}\n`)
  process.stdout.write(`Targets (${machineLine(machine)}; ${pinning.description}):\n${targetLines(result.targets).join('\n')}\n\n`)
  progress(`done in ${Math.round(result.durationSec)} s; wrote ${files.map((file) => path.relative(process.cwd(), file)).join(', ')}`)
}

main().catch(async (error: unknown) => {
  progress(`bench failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
  await stopServers().catch(() => {})
  killAll()
  process.exitCode = 1
})
