/** Command-line options of `npm run bench` and the durations they imply. */
import path from 'node:path'

export type Suite = 'client' | 'http'

export interface Timing {
  /** Interleaved rounds; results are the median over them. */
  rounds: number
  /** Load before each measured window, ms (not counted). */
  warmupMs: number
  /** The measured window, ms. */
  windowMs: number
  /** Times a window disturbed by other processes' CPU is measured again. */
  retries: number
  /** Time re-measuring disturbed windows may take in the whole suite, ms (bounds its length). */
  retryBudgetMs: number
  /**
   * Measures the A/A control: a second, identical copy of ours next to the
   * first (workload.ts TWIN_ID, the HTTP variant ours-memcached-twin). Its
   * ratio to ours is the run's noise. Full runs only: in a quick run's few
   * rounds it says little, and it would push the run past 3 minutes. The
   * contract floor (CONTRACT_FLOOR_ID), context as well, goes with it.
   */
  control: boolean
}

// autocannon runs whole seconds: HTTP warmup + window is kept a multiple of 1000 ms.
export interface BenchConfig {
  quick: boolean
  suites: Suite[]
  client: Timing
  http: Timing & {
    /** Concurrent HTTP connections of the load generator: each count is a run of its own. */
    connections: number[]
    /** Existing sessions whose cookies rotate across requests. */
    sessions: number
  }
  /** Where latest.{json,md,svg} go. */
  outDir: string
  /**
   * Only these client scenario ids (e.g. `set-128`) and HTTP variant ids
   * (e.g. `ours-memory`); undefined runs all. For working on one figure:
   * a filtered run writes latest.* only, never quick.* / full.*.
   */
  only: ReadonlySet<string> | undefined
}

const USAGE = `usage: npm run bench -- [--quick] [--only=client|http] [--cases=A,B] [--rounds=N] [--out=DIR]
  --quick      short windows (under 3 minutes in all)
  --only=X     run only the client or only the http suite
  --cases=A,B  run only these client scenarios (get-128, set-128, mget-16, ...)
               and HTTP variants (none, ours-memcached, ours-memory, ...); naming
               clients (ours, ours-nocoalesce, memjs, ...) narrows the peers too
  --rounds=N   interleaved rounds (default 3 quick, 5 full)
  --out=DIR    results directory (default bench/results)`

/** Parses `process.argv.slice(2)`; throws with the usage on a bad argument. */
export function parseArgs (argv: readonly string[]): BenchConfig {
  let quick = false
  let suites: Suite[] = ['client', 'http']
  let rounds: number | undefined
  let only: Set<string> | undefined
  // build/bench/lib -> the repository's bench/results
  let outDir = path.resolve(__dirname, '../../../bench/results')
  for (const arg of argv) {
    const [name, value] = arg.split('=', 2) as [string, string | undefined]
    if (name === '--quick') quick = true
    else if (name === '--only' && (value === 'client' || value === 'http')) suites = [value]
    else if (name === '--rounds' && value !== undefined && /^[1-9][0-9]?$/.test(value)) rounds = Number(value)
    else if (name === '--cases' && value !== undefined && value !== '') only = new Set(value.split(','))
    else if (name === '--out' && value !== undefined && value !== '') outDir = path.resolve(value)
    else if (name === '--help' || name === '-h') throw new Error(USAGE)
    else throw new Error(`unknown argument ${JSON.stringify(arg)}\n${USAGE}`)
  }
  return {
    quick,
    suites,
    client: quick
      ? { rounds: rounds ?? 3, warmupMs: 60, windowMs: 160, retries: 1, retryBudgetMs: 8_000, control: false }
      : { rounds: rounds ?? 5, warmupMs: 300, windowMs: 1200, retries: 2, retryBudgetMs: 45_000, control: true },
    http: {
      ...(quick
        ? { rounds: rounds ?? 2, warmupMs: 300, windowMs: 700, retries: 1, retryBudgetMs: 8_000, control: false }
        : { rounds: rounds ?? 5, warmupMs: 1000, windowMs: 3000, retries: 2, retryBudgetMs: 45_000, control: true }),
      connections: [32, 100],
      sessions: 100
    },
    outDir,
    only
  }
}
