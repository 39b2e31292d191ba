// `npm run bench`: named, bounded scenarios on this machine, loopback only.
// Every scenario runs the baselines in the same run (the service direct, and a
// minimal single-purpose bridge) beside relayq, so what is reported are
// ratios; absolute numbers on a shared 2-core machine are noisy.
//
// Knobs (env): BENCH_SECONDS (10), BENCH_WARMUP (3), BENCH_ROUNDS (1), BENCH_SCENARIOS (comma
// list of names; default all), BENCH_TARGETS (target labels separated by |; default all),
// BENCH_RATE (a fixed request rate), BENCH_BASE_BUNDLE (another build: small-64's and tracing's
// relayq targets run on it too), BENCH_UPDATE_README=1 rewrites the table in bench/README.md.
// Results go to bench/results/<time>.json.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import autocannon from 'autocannon'
import * as amqp from 'amqplib'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
const WARMUP = Number(process.env.BENCH_WARMUP ?? 3)
// Rounds alternate the targets (A, B, A, B, ...) and report medians: the machine's noise hits both alike.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1)
// BENCH_RATE: requests/s for every target instead of as many as they take; the CPU per request is then compared at
// one load, steadier on a shared machine than the top rate.
const RATE = process.env.BENCH_RATE === undefined ? undefined : Number(process.env.BENCH_RATE)
// Labels hold commas, so BENCH_TARGETS separates them with |.
const ONLY = process.env.BENCH_TARGETS === undefined ? null : process.env.BENCH_TARGETS.split('|')
const AMQP_URL = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const ROOT = join(__dirname, '..')
const BUNDLE = join(ROOT, 'dist/relayq.js')

type Kind = 'direct' | 'bridge' | 'relayq'

interface Target {
  readonly label: string
  readonly kind: Kind
  readonly env?: Record<string, string>
  readonly headers?: Record<string, string>
  /** Every request carries an Idempotency-Key of its own (the keyed path, never a replay). */
  readonly uniqueKeys?: boolean
  /** Another build of relayq (BENCH_BASE_BUNDLE: e.g. main's), to compare against this one. */
  readonly bundle?: string
}

interface Scenario {
  readonly name: string
  readonly what: string
  readonly connections: number
  readonly bodyBytes: number
  readonly serviceDelayMs?: number
  readonly targets: readonly Target[]
}

const DIRECT: Target = { label: 'direct', kind: 'direct' }
const BRIDGE: Target = { label: 'minimal bridge', kind: 'bridge' }
const RELAYQ: Target = { label: 'relayq', kind: 'relayq' }

// A trace sink in a process of its own: takes OTLP exports and answers 200. Its CPU is shown as `collector` and
// left out of the CPU-bound estimate: in production the collector runs elsewhere, and its cost is not relayq's.
const OTLP_SINK = `http://127.0.0.1:${Number(process.env.BENCH_OTLP_PORT ?? 14318)}`
const BASE_BUNDLE = process.env.BENCH_BASE_BUNDLE
/** In the scenarios that compare builds (small-64, tracing), each relayq target also runs on the base build. */
function withBase (targets: Target[]): Target[] {
  if (BASE_BUNDLE === undefined) return targets
  return targets.flatMap((t) => t.kind === 'relayq' ? [{ ...t, label: `${t.label} (base build)`, bundle: BASE_BUNDLE }, t] : [t])
}
const TRACING_TARGETS: Target[] = withBase([
  { label: 'relayq, tracing off', kind: 'relayq' },
  { label: 'relayq, tracing 100%', kind: 'relayq', env: { OTEL_EXPORTER_OTLP_ENDPOINT: OTLP_SINK } },
  { label: 'relayq, tracing 1%', kind: 'relayq', env: { OTEL_EXPORTER_OTLP_ENDPOINT: OTLP_SINK, OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.01' } },
  // Nothing sampled, every message still carries its trace context: the fixed cost of tracing on, without spans.
  { label: 'relayq, tracing 0%', kind: 'relayq', env: { OTEL_EXPORTER_OTLP_ENDPOINT: OTLP_SINK, OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' } },
])

const SCENARIOS: Scenario[] = [
  {
    name: 'small-64',
    what: '256 B POST, 64 connections',
    connections: 64,
    bodyBytes: 256,
    targets: withBase([DIRECT, BRIDGE, RELAYQ, { label: 'relayq, metrics off', kind: 'relayq', env: { METRICS_ENABLED: 'false' } }, { label: 'relayq, persistent', kind: 'relayq', env: { ENQUEUER_PERSISTENT: 'true' } }]),
  },
  { name: 'small-16', what: '256 B POST, 16 connections', connections: 16, bodyBytes: 256, targets: [BRIDGE, RELAYQ] },
  { name: 'small-256', what: '256 B POST, 256 connections', connections: 256, bodyBytes: 256, targets: [BRIDGE, RELAYQ] },
  { name: 'body-64k', what: '64 KiB POST, 16 connections', connections: 16, bodyBytes: 64 * 1024, targets: [BRIDGE, RELAYQ] },
  { name: 'slow-50ms', what: 'service takes 50 ms, 64 connections', connections: 64, bodyBytes: 256, serviceDelayMs: 50, targets: [BRIDGE, RELAYQ] },
  { name: 'quorum', what: '256 B POST, 64 connections, quorum queue', connections: 64, bodyBytes: 256, targets: [BRIDGE, { label: 'relayq, quorum', kind: 'relayq', env: { DEQUEUER_QUEUE_TYPE: 'quorum' } }] },
  { name: 'async-202', what: 'jobs accepted (202) per second, 64 connections', connections: 64, bodyBytes: 256, targets: [RELAYQ, { label: 'relayq, 202', kind: 'relayq', headers: { prefer: 'respond-async' } }] },
  { name: 'idempotency', what: '256 B POST, 64 connections, ENQUEUER_IDEMPOTENCY=true without and with keys', connections: 64, bodyBytes: 256, targets: [RELAYQ, { label: 'relayq, idempotency on, no key', kind: 'relayq', env: { ENQUEUER_IDEMPOTENCY: 'true' } }, { label: 'relayq, a key each, idempotency off', kind: 'relayq', uniqueKeys: true }, { label: 'relayq, a key each (memory)', kind: 'relayq', env: { ENQUEUER_IDEMPOTENCY: 'true', ENQUEUER_IDEMPOTENCY_TTL: '60' }, uniqueKeys: true }, { label: 'relayq, a key each (Redis)', kind: 'relayq', env: { ENQUEUER_IDEMPOTENCY: 'true', ENQUEUER_IDEMPOTENCY_TTL: '60', ASYNC_JOBS: 'false', REDIS_URL: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/15' }, uniqueKeys: true }] },
  { name: 'workers-2', what: '256 B POST, 64 connections, ENQUEUER_WORKERS=2', connections: 64, bodyBytes: 256, targets: [BRIDGE, RELAYQ, { label: 'relayq, 2 workers', kind: 'relayq', env: { ENQUEUER_WORKERS: '2' } }] },
  { name: 'stream-cost', what: '256 B POST, 64 connections: streaming on (every request announces it; nothing streams) against off', connections: 64, bodyBytes: 256, targets: [RELAYQ, { label: 'relayq, streams off', kind: 'relayq', env: { ENQUEUER_STREAM_IDLE_TIMEOUT_MS: '0', DEQUEUER_STREAM_THRESHOLD_BYTES: '0' } }] },
  {
    name: 'response-64k',
    what: '64 KiB responses, 16 connections: buffered (one reply) against streamed (DEQUEUER_STREAM_THRESHOLD_BYTES=1)',
    connections: 16,
    bodyBytes: 256,
    targets: [
      { label: 'relayq, 64 KiB buffered', kind: 'relayq', headers: { 'x-bench-response-bytes': String(64 * 1024) } },
      { label: 'relayq, 64 KiB streamed', kind: 'relayq', env: { DEQUEUER_STREAM_THRESHOLD_BYTES: '1' }, headers: { 'x-bench-response-bytes': String(64 * 1024) } },
    ],
  },
  {
    name: 'response-16m',
    what: '16 MiB responses, 4 connections: buffered (DEQUEUER_MAX_REPLY_BYTES raised, streaming off) against streamed (default threshold)',
    connections: 4,
    bodyBytes: 256,
    targets: [
      { label: 'relayq, 16 MiB buffered', kind: 'relayq', env: { DEQUEUER_STREAM_THRESHOLD_BYTES: '0', DEQUEUER_MAX_REPLY_BYTES: String(17 * 1024 * 1024) }, headers: { 'x-bench-response-bytes': String(16 * 1024 * 1024) } },
      { label: 'relayq, 16 MiB streamed', kind: 'relayq', headers: { 'x-bench-response-bytes': String(16 * 1024 * 1024) } },
    ],
  },
  {
    name: 'batch',
    what: 'service takes 20 ms per call, 10 calls in flight, 64 connections: one message per call vs 10',
    connections: 64,
    bodyBytes: 256,
    serviceDelayMs: 20,
    targets: [{ label: 'relayq, single, prefetch 10', kind: 'relayq', env: { DEQUEUER_CONCURRENCY: '10' } }, { label: 'relayq, batch 10, prefetch 100', kind: 'relayq', env: { BATCH_MODE: 'true', BATCH_SIZE: '10', BATCH_WINDOW_MS: '5', DEQUEUER_CONCURRENCY: '100' } }],
  },
  { name: 'tracing', what: '256 B POST, 64 connections: tracing off, sampled 100% and 1% (both sides export OTLP/protobuf to a sink)', connections: 64, bodyBytes: 256, targets: TRACING_TARGETS },
]

interface Row {
  scenario: string
  target: string
  rps: number
  p50: number
  p99: number
  errors: number
  non2xx: number
  cpuUsPerRequest: Record<string, number>
  syscallsPerRequest: Record<string, number>
  rssMb: Record<string, number>
}

async function freePort (): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer()
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

function cpuSeconds (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** Read and write system calls so far (batching shows here, whatever the machine's noise). */
function syscalls (pid: number): number {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8')
  return Number(/syscr: (\d+)/.exec(io)?.[1] ?? 0) + Number(/syscw: (\d+)/.exec(io)?.[1] ?? 0)
}

function rssMb (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Math.round(Number(m[1]) / 1024)
}

/** The process and its children (cluster workers). */
function family (pid: number): number[] {
  try {
    const children = execFileSync('pgrep', ['-P', String(pid)]).toString().trim().split('\n').filter(Boolean).map(Number)
    return [pid, ...children.flatMap(family)]
  } catch {
    return [pid]
  }
}

function brokerPid (): number | null {
  try {
    return Number(execFileSync('rabbitmqctl', ['-q', 'eval', 'os:getpid().']).toString().replace(/\D/g, ''))
  } catch {
    return null
  }
}

async function waitHttp (url: string, timeoutMs = 15000, pollMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      const res = await fetch(url)
      if (res.status === 200) return
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`not ready: ${url}`)
    await new Promise((resolve) => setTimeout(resolve, pollMs))
  }
}

function start (args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'ignore', 'inherit'] })
  return child
}

async function stop (children: ChildProcess[]): Promise<void> {
  await Promise.all(children.map((c) => new Promise<void>((resolve) => {
    if (c.exitCode !== null) return resolve()
    c.once('exit', () => resolve())
    c.kill('SIGTERM')
    setTimeout(() => c.kill('SIGKILL'), 5000).unref()
  })))
}

interface Running { url: string, procs: Record<string, ChildProcess>, children: ChildProcess[] }

async function startTarget (t: Target, servicePort: number, queueName: string): Promise<Running> {
  const service = `http://127.0.0.1:${servicePort}`
  if (t.kind === 'direct') return { url: `${service}/`, procs: {}, children: [] }
  const port = await freePort()
  if (t.kind === 'bridge') {
    const deq = start([join(ROOT, 'bench/minimal-bridge.js')], { MODE: 'dequeuer', SERVICE: queueName, DOWNSTREAM: service, AMQP_URL })
    await new Promise((resolve) => setTimeout(resolve, 500))
    const enq = start([join(ROOT, 'bench/minimal-bridge.js')], { MODE: 'enqueuer', SERVICE: queueName, PORT: String(port), AMQP_URL })
    await new Promise((resolve) => setTimeout(resolve, 500))
    return { url: `http://127.0.0.1:${port}/`, procs: { enqueuer: enq, dequeuer: deq }, children: [enq, deq] }
  }
  const admin = await freePort()
  const env = t.env ?? {}
  const batch = env.BATCH_MODE === 'true' ? { BATCH_DOWNSTREAM_URL: `${service}/batch` } : {}
  const bundle = t.bundle ?? BUNDLE
  const deq = start([bundle], { RELAYQ_MODE: 'dequeuer', RABBITMQ_URL: AMQP_URL, SERVICE_NAME: queueName, DOWNSTREAM_URL: service, METRICS_PORT: String(admin), METRICS_HOST: '127.0.0.1', LOG_LEVEL: 'warn', DEQUEUER_CONCURRENCY: '200', ...batch, ...env })
  await waitHttp(`http://127.0.0.1:${admin}/readyz`)
  const enq = start([bundle], { RELAYQ_MODE: 'enqueuer', RABBITMQ_URL: AMQP_URL, ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env })
  await waitHttp(`http://127.0.0.1:${port}/readyz`)
  // With workers, readiness answers from whichever took the connection: give the rest a moment.
  if (env.ENQUEUER_WORKERS !== undefined) await new Promise((resolve) => setTimeout(resolve, 1500))
  return { url: `http://127.0.0.1:${port}/${queueName}/`, procs: { enqueuer: enq, dequeuer: deq }, children: [enq, deq] }
}

let keys = 0
const keyRun = Date.now().toString(36)
function withNewKey (req: autocannon.Request): autocannon.Request {
  return { ...req, headers: { ...req.headers, 'idempotency-key': `"bench-${keyRun}-${keys++}"` } }
}

async function load (url: string, s: Scenario, t: Target, seconds: number): Promise<autocannon.Result> {
  return autocannon({
    url,
    method: 'POST',
    connections: s.connections,
    duration: seconds,
    body: Buffer.alloc(s.bodyBytes, 'x'),
    headers: { 'content-type': 'application/octet-stream', ...(t.headers ?? {}) },
    pipelining: 1,
    ...(RATE === undefined ? {} : { overallRate: RATE }),
    ...(t.uniqueKeys === true ? { requests: [{ setupRequest: withNewKey }] } : {}),
  })
}

async function runScenario (s: Scenario, broker: number | null): Promise<Row[]> {
  const servicePort = await freePort()
  const svc = start([join(ROOT, 'bench/echo-service.js')], { PORT: String(servicePort), DELAY_MS: String(s.serviceDelayMs ?? 0) })
  await new Promise((resolve) => setTimeout(resolve, 300))
  const targets = ONLY === null ? s.targets : s.targets.filter((t) => ONLY.includes(t.label))
  const runs: Row[][] = targets.map(() => [])
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Each round starts one target later, so no target always follows the same one (a heavy target leaves the
      // broker and the machine busier for the next).
      for (let k = 0; k < targets.length; k++) {
        const i = (k + round) % targets.length
        const t = targets[i]!
        const row = await measure(s, t, `bench-${s.name}-${i}`, servicePort, svc, broker)
        runs[i]!.push(row)
        console.log(formatRow(row))
      }
    }
  } finally {
    await stop([svc])
  }
  if (ROUNDS > 1) console.log(roundRatios(targets, runs).join('\n'))
  return runs.map(median)
}

/**
 * Each target against the scenario's first, round by round (the targets of
 * one round run within a minute of each other): the median ratio of req/s,
 * and a CPU-bound estimate that does not move with the machine's speed. The
 * estimate is the ratio of all processes' CPU per request (relay, broker,
 * service, load generator; not the trace sink's), each round's figures divided by the echo
 * service's own CPU per request, which is the same work in every target and
 * so measures how fast the machine ran in that window (on this shared
 * machine it moved 2x between windows a minute apart).
 */
function roundRatios (targets: readonly Target[], runs: readonly Row[][]): string[] {
  const med = (xs: number[]): number => {
    const a = [...xs].sort((x, y) => x - y)
    return a.length === 0 ? NaN : a.length % 2 === 1 ? a[(a.length - 1) / 2]! : (a[a.length / 2 - 1]! + a[a.length / 2]!) / 2
  }
  const work = (r: Row): number => {
    const c = r.cpuUsPerRequest
    const total = Object.entries(c).reduce((a, [k, v]) => k === 'collector' ? a : a + v, 0)
    return total / Math.max(1, c.service ?? 1)
  }
  const first = runs[0] ?? []
  return targets.slice(1).map((t, k) => {
    const rows = runs[k + 1] ?? []
    const rps = rows.map((r, i) => r.rps / Math.max(1, first[i]?.rps ?? 0))
    const cpu = rows.map((r, i) => first[i] === undefined ? NaN : work(first[i]) / work(r))
    return `${t.label} against ${targets[0]!.label}, ${rows.length} rounds: req/s ratio median ${med(rps).toFixed(3)} (rounds ${rps.map((x) => x.toFixed(2)).sort().join(' ')}); CPU-bound estimate ${med(cpu).toFixed(3)} (rounds ${cpu.map((x) => x.toFixed(2)).sort().join(' ')})`
  })
}

async function measure (s: Scenario, t: Target, queueName: string, servicePort: number, svc: ChildProcess, broker: number | null): Promise<Row> {
  const running = await startTarget(t, servicePort, queueName)
  try {
    await load(running.url, s, t, WARMUP)
    // `load`: this process, autocannon; `collector`: the trace sink, for the tracing targets.
    const pids: Record<string, number[]> = { service: [svc.pid!], load: [process.pid] }
    if (collector !== null && t.env?.OTEL_EXPORTER_OTLP_ENDPOINT !== undefined) pids.collector = [collector.pid!]
    for (const [name, p] of Object.entries(running.procs)) pids[name] = family(p.pid!)
    if (broker !== null) pids.broker = [broker]
    const relays = Object.entries(pids).filter(([k]) => k === 'enqueuer' || k === 'dequeuer')
    const sum = (f: (pid: number) => number, list: Array<[string, number[]]>): Record<string, number> => Object.fromEntries(list.map(([k, ps]) => [k, ps.reduce((a, p) => a + f(p), 0)]))
    const before = sum(cpuSeconds, Object.entries(pids))
    const sysBefore = sum(syscalls, relays)
    const result = await load(running.url, s, t, SECONDS)
    const after = sum(cpuSeconds, Object.entries(pids))
    const sysAfter = sum(syscalls, relays)
    const requests = result.requests.total
    return {
      scenario: s.name,
      target: t.label,
      rps: Math.round(result.requests.average),
      p50: result.latency.p50,
      p99: result.latency.p99,
      errors: result.errors + result.timeouts,
      non2xx: result.non2xx,
      cpuUsPerRequest: Object.fromEntries(Object.keys(pids).map((k) => [k, Math.round(((after[k] ?? 0) - (before[k] ?? 0)) * 1e6 / Math.max(1, requests))])),
      syscallsPerRequest: Object.fromEntries(Object.keys(sysAfter).map((k) => [k, Math.round(((sysAfter[k] ?? 0) - (sysBefore[k] ?? 0)) * 10 / Math.max(1, requests)) / 10])),
      rssMb: Object.fromEntries(Object.entries(running.procs).map(([k, p]) => [k, family(p.pid!).reduce((a, q) => a + rssMb(q), 0)])),
    }
  } finally {
    await stop(running.children)
    await deleteQueues(queueName)
  }
}

/** The round with the median throughput stands for the target (its latency and CPU come with it). */
function median (rows: Row[]): Row {
  const sorted = [...rows].sort((a, b) => a.rps - b.rps)
  return sorted[Math.floor((sorted.length - 1) / 2)] as Row
}

async function deleteQueues (queueName: string): Promise<void> {
  const conn = await amqp.connect(AMQP_URL)
  try {
    for (const q of [queueName, `${queueName}_requests`, `${queueName}_requests.dlq`, `${queueName}_requests.retry.1000`, `${queueName}_requests.retry.2000`]) {
      const ch = await conn.createChannel()
      ch.on('error', () => {})
      await ch.deleteQueue(q).catch(() => {})
      await ch.close().catch(() => {})
    }
  } finally {
    await conn.close()
  }
}

function formatRow (r: Row): string {
  const cpu = Object.entries(r.cpuUsPerRequest).map(([k, v]) => `${k} ${v}`).join(', ')
  const rss = Object.entries(r.rssMb).map(([k, v]) => `${k} ${v}`).join(', ')
  const sys = Object.entries(r.syscallsPerRequest).map(([k, v]) => `${k} ${v}`).join(', ')
  return `${r.scenario.padEnd(10)} ${r.target.padEnd(28)} ${String(r.rps).padStart(6)} req/s  p50 ${String(r.p50).padStart(3)} ms  p99 ${String(r.p99).padStart(4)} ms  errors ${r.errors + r.non2xx}  cpu µs/req: ${cpu}${sys === '' ? '' : `  syscalls/req: ${sys}`}${rss === '' ? '' : `  rss MB: ${rss}`}`
}

function markdown (rows: Row[], started: Date): string {
  const lines = [
    `Measured ${started.toISOString().slice(0, 10)} on this project's CI machine (2 cores shared by autocannon, RabbitMQ ${brokerVersion()}, the service and the relay; Node ${process.version}).`,
    `Each target: ${WARMUP} s warm-up, then ${SECONDS} s measured with autocannon (POST, pipelining 1)${ROUNDS > 1 ? `; ${ROUNDS} rounds alternating the targets (each round starting one target later), the median round shown` : ''}. CPU and system calls are per request over the measured window, from /proc.`,
    '',
    '| scenario | target | req/s | ratio | p50 ms | p99 ms | errors | CPU µs/req (enqueuer / dequeuer / broker) | syscalls/req (enq / deq) | RSS MB (enq / deq) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |',
  ]
  for (const r of rows) {
    const base = rows.find((b) => b.scenario === r.scenario && b.target === 'minimal bridge') ?? rows.find((b) => b.scenario === r.scenario)
    const ratio = base === undefined || base.rps === 0 ? '' : (r.rps / base.rps).toFixed(2)
    const c = r.cpuUsPerRequest
    const y = r.syscallsPerRequest
    lines.push(`| ${r.scenario} | ${r.target} | ${r.rps} | ${ratio} | ${r.p50} | ${r.p99} | ${r.errors + r.non2xx} | ${c.enqueuer ?? '-'} / ${c.dequeuer ?? '-'} / ${c.broker ?? '-'} | ${y.enqueuer ?? '-'} / ${y.dequeuer ?? '-'} | ${r.rssMb.enqueuer ?? '-'} / ${r.rssMb.dequeuer ?? '-'} |`)
  }
  lines.push('', 'ratio: requests/s against the minimal bridge in the same scenario (against the first target where there is no bridge).')
  return lines.join('\n')
}

function brokerVersion (): string {
  try {
    return /"([\d.]+)"/.exec(execFileSync('rabbitmqctl', ['-q', 'eval', 'rabbit_misc:version().']).toString())?.[1] ?? '?'
  } catch {
    return '?'
  }
}

/** Spawn to /readyz 200, with the broker up: the median of five starts of each mode. */
async function startupTimes (): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const mode of ['enqueuer', 'dequeuer'] as const) {
    const times: number[] = []
    for (let i = 0; i < 5; i++) {
      const port = await freePort()
      const env = mode === 'enqueuer'
        ? { RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1' }
        : { RELAYQ_MODE: 'dequeuer', SERVICE_NAME: 'bench-startup', DOWNSTREAM_URL: 'http://127.0.0.1:9', METRICS_PORT: String(port), METRICS_HOST: '127.0.0.1' }
      const t0 = performance.now()
      const child = start([BUNDLE], { RABBITMQ_URL: AMQP_URL, LOG_LEVEL: 'warn', ...env })
      await waitHttp(`http://127.0.0.1:${port}/readyz`, 10000, 5)
      times.push(performance.now() - t0)
      await stop([child])
    }
    times.sort((a, b) => a - b)
    out[mode] = Math.round(times[2] as number)
  }
  await deleteQueues('bench-startup')
  return out
}

async function main (): Promise<void> {
  const wanted = (process.env.BENCH_SCENARIOS ?? '').split(',').map((s) => s.trim()).filter(Boolean)
  const scenarios = wanted.length === 0 ? SCENARIOS : SCENARIOS.filter((s) => wanted.includes(s.name))
  if (scenarios.length === 0) throw new Error(`no scenario named ${wanted.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`)
  const started = new Date()
  const broker = brokerPid()
  const startup = await startupTimes()
  const bundleKiB = Math.round(statSync(BUNDLE).size / 1024)
  console.log(`start-up to ready (median of 5): enqueuer ${startup.enqueuer} ms, dequeuer ${startup.dequeuer} ms; bundle ${bundleKiB} KiB`)
  collector = scenarios.some((s) => s.name === 'tracing') ? await otlpSink() : null
  const rows: Row[] = []
  for (const s of scenarios) {
    console.log(`\n## ${s.name}: ${s.what}`)
    rows.push(...await runScenario(s, broker))
  }
  const table = markdown(rows, started) + `\n\nStart-up to ready (spawn to /readyz 200, broker up, median of 5): enqueuer ${startup.enqueuer} ms, dequeuer ${startup.dequeuer} ms. Bundle: ${bundleKiB} KiB.`
  if (collector !== null) await stop([collector])
  console.log('\n' + table)
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true })
  const file = join(ROOT, 'bench/results', `${started.toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify({ started, seconds: SECONDS, warmup: WARMUP, rounds: ROUNDS, node: process.version, startup, bundleKiB, rows }, null, 2))
  console.log(`\nresults: ${file}`)
  if (process.env.BENCH_UPDATE_README === '1') {
    const readme = join(ROOT, 'bench/README.md')
    const text = readFileSync(readme, 'utf8')
    const start = text.indexOf('<!-- bench-table:start -->')
    const end = text.indexOf('<!-- bench-table:end -->')
    if (start === -1 || end === -1) throw new Error('bench/README.md has no bench-table markers')
    writeFileSync(readme, text.slice(0, start + '<!-- bench-table:start -->'.length) + '\n' + table + '\n' + text.slice(end))
    console.log('bench/README.md updated')
  }
}

main().catch((err: Error) => {
  console.error(err)
  process.exit(1)
})

/** The trace sink's process, while a tracing scenario runs. */
let collector: ChildProcess | null = null

/** A process that answers every OTLP export 200 after reading it. */
async function otlpSink (): Promise<ChildProcess> {
  const code = `require('node:http').createServer((q, s) => { q.resume(); q.on('end', () => s.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()) }).listen(${Number(new URL(OTLP_SINK).port)}, '127.0.0.1', () => console.log('listening'))`
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (c) => reject(new Error(`the trace sink exited (${String(c)})`)))
    child.stdout.once('data', () => resolve())
  })
  return child
}
