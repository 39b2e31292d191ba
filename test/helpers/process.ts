// relayq as a real child process, from the built bundle.
import { spawn, type ChildProcess } from 'node:child_process'
import { resolve } from 'node:path'
import { AMQP_URL } from './broker'
import { send } from './http'
import { reapOnExit } from './reaper'
import { waitFor } from './wait'

export const BUNDLE = resolve(__dirname, '../../dist/relayq.js')

export interface RelayProcess {
  readonly child: ChildProcess
  readonly pid: number
  /** Everything written to stdout and stderr so far. */
  output: () => string
  /** Parsed JSON log lines from stdout. */
  logs: () => Array<Record<string, unknown>>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  kill: (signal?: NodeJS.Signals) => void
}

export function spawnRelay (env: Record<string, string>, opts: { bundle?: string, cwd?: string, args?: string[] } = {}): RelayProcess {
  const child = spawn(process.execPath, [opts.bundle ?? BUNDLE, ...(opts.args ?? [])], {
    cwd: opts.cwd ?? process.cwd(),
    env: { PATH: process.env.PATH ?? '', RABBITMQ_URL: AMQP_URL, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let stdout = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); stdout += c.toString() })
  child.stderr.on('data', (c: Buffer) => { out += c.toString() })
  const forget = reapOnExit(() => child.kill('SIGKILL'))
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolveExit) => {
    child.on('exit', (code, signal) => { forget(); resolveExit({ code, signal }) })
  })
  return {
    child,
    pid: child.pid!,
    output: () => out,
    logs: () => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>),
    exited,
    kill: (signal = 'SIGTERM') => { if (child.exitCode === null && child.signalCode === null) child.kill(signal) },
  }
}

export async function waitReady (adminUrl: string, timeoutMs = 10000): Promise<void> {
  await waitFor(async () => (await send(`${adminUrl}/readyz`)).status === 200, { timeoutMs, what: `${adminUrl}/readyz` })
}

/** A free TCP port on loopback (bound and released). */
export async function freePort (): Promise<number> {
  const net = await import('node:net')
  return new Promise((resolvePort) => {
    const s = net.createServer()
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as import('node:net').AddressInfo).port
      s.close(() => resolvePort(port))
    })
  })
}

/** Keeps one relayq process running: restarts it (after `delayMs`) whenever it exits, until stopped. */
export class Supervisor {
  current: RelayProcess
  restarts = 0
  private stopped = false

  constructor (private readonly start: () => RelayProcess, private readonly delayMs = 200) {
    this.current = this.launch()
  }

  private launch (): RelayProcess {
    const p = this.start()
    void p.exited.then(() => {
      if (this.stopped) return
      this.restarts++
      setTimeout(() => { if (!this.stopped) this.current = this.launch() }, this.delayMs)
    })
    return p
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.current.kill('SIGKILL')
    await this.current.exited
  }
}
