// relayq's two modes started in-process, on free ports, against the real broker.
import { Writable } from 'node:stream'
import { loadConfig } from '../../src/config/load'
import { startDequeuer, type RunningDequeuer } from '../../src/dequeuer'
import { startEnqueuer, type EnqueuerDeps, type RunningEnqueuer } from '../../src/enqueuer'
import { createLogger } from '../../src/log'
import { createRegistry } from '../../src/metrics/registry'
import { AMQP_URL } from './broker'

export type Env = Record<string, string>

/** Log lines written by a relayq started in-process, parsed. */
export class LogCapture extends Writable {
  readonly lines: Array<Record<string, unknown>> = []
  override _write (chunk: Buffer, _enc: string, cb: () => void): void {
    for (const line of chunk.toString().split('\n')) if (line !== '') this.lines.push(JSON.parse(line) as Record<string, unknown>)
    cb()
  }

  has (msg: string): boolean {
    return this.lines.some((l) => l.msg === msg)
  }
}

export interface TestEnqueuer extends RunningEnqueuer {
  readonly url: string
  readonly logs: LogCapture
}

export interface TestDequeuer extends RunningDequeuer {
  readonly adminUrl: string
  readonly logs: LogCapture
}

export async function startTestEnqueuer (env: Env = {}, opts: { waitConnected?: boolean, deps?: Partial<EnqueuerDeps> } = {}): Promise<TestEnqueuer> {
  const config = loadConfig({ RELAYQ_MODE: 'enqueuer', RABBITMQ_URL: AMQP_URL, ENQUEUER_HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env })
  const logs = new LogCapture()
  const logger = createLogger(config.logLevel, { mode: 'enqueuer' }, logs)
  const registry = config.metricsEnabled ? createRegistry('enqueuer') : null
  const running = await startEnqueuer(config, { logger, registry, port: 0, ...(env.ADMIN_PORT !== undefined ? { adminPort: 0 } : {}), ...opts.deps })
  if (opts.waitConnected !== false) await running.connected
  return Object.assign(running, { url: `http://127.0.0.1:${running.port}`, logs })
}

export async function startTestDequeuer (service: string, downstreamUrl: string, env: Env = {}): Promise<TestDequeuer> {
  const config = loadConfig({
    RELAYQ_MODE: 'dequeuer',
    RABBITMQ_URL: AMQP_URL,
    SERVICE_NAME: service,
    DOWNSTREAM_URL: downstreamUrl,
    METRICS_HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    ...env,
  })
  const logs = new LogCapture()
  const logger = createLogger(config.logLevel, { mode: 'dequeuer' }, logs)
  const registry = config.metricsEnabled ? createRegistry('dequeuer') : null
  const running = await startDequeuer(config, { logger, registry, adminPort: 0 })
  return Object.assign(running, { adminUrl: `http://127.0.0.1:${running.adminPort}`, logs })
}
