// A RabbitMQ node of the test's own, on another loopback port, for faults
// that stop, kill, freeze or alarm the broker: the shared broker on 5672 is
// never touched. Started from the installed RabbitMQ with its own data, log
// and config folders; stop() removes it even when the test failed.
import { execFile, execFileSync } from 'node:child_process'
import { copyFileSync, chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './process'
import { reapOnExit } from './reaper'
import { waitFor } from './wait'

const run = promisify(execFile)
// Debian's RabbitMQ layout; the /usr/sbin wrappers switch user and drop the variables below.
const BIN = process.env.RELAYQ_TEST_RABBITMQ_BIN ?? '/usr/lib/rabbitmq/bin'
const SYSTEM_COOKIE = '/var/lib/rabbitmq/.erlang.cookie'

export class PrivateBroker {
  readonly dir: string
  readonly node: string
  port = 0
  private distPort = 0
  private started = false
  private forget = (): void => {}

  /** `erlArgs`: extra emulator flags (a cluster's nodes run on one scheduler each so three fit two cores). */
  constructor (private readonly extraConfig: string[] = [], private readonly opts: { erlArgs?: string } = {}) {
    this.dir = mkdtempSync(join(tmpdir(), 'relayq-broker-'))
    this.node = `relayq-${process.pid}-${Math.floor(Math.random() * 1e6)}@${hostname().split('.')[0]}`
  }

  get url (): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`
  }

  private env (): NodeJS.ProcessEnv {
    const d = this.dir
    return {
      ...process.env,
      HOME: d,
      RABBITMQ_NODENAME: this.node,
      RABBITMQ_NODE_PORT: String(this.port),
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_MNESIA_BASE: join(d, 'mnesia'),
      RABBITMQ_LOG_BASE: join(d, 'log'),
      RABBITMQ_CONFIG_FILE: join(d, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(d, 'enabled_plugins'),
      RABBITMQ_PID_FILE: join(d, 'pid'),
      RABBITMQ_CONF_ENV_FILE: join(d, 'empty.env'),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: `-kernel inet_dist_use_interface {127,0,0,1} ${this.opts.erlArgs ?? ''}`,
      RABBITMQ_CTL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    }
  }

  async start (): Promise<void> {
    await this.launch()
    await this.awaitStartup()
  }

  /** Starts the node without waiting for it (a cluster boots its nodes side by side). */
  async launch (): Promise<void> {
    this.port = await freePort()
    this.distPort = await freePort()
    const d = this.dir
    if (existsSync(SYSTEM_COOKIE)) {
      copyFileSync(SYSTEM_COOKIE, join(d, '.erlang.cookie'))
      chmodSync(join(d, '.erlang.cookie'), 0o400)
    }
    writeFileSync(join(d, 'enabled_plugins'), '[].\n')
    writeFileSync(join(d, 'empty.env'), '')
    writeFileSync(join(d, 'rabbitmq.conf'), [`listeners.tcp.default = 127.0.0.1:${this.port}`, 'loopback_users = none', ...this.extraConfig].join('\n') + '\n')
    this.forget = reapOnExit(() => {
      try { process.kill(this.pid(), 'SIGKILL') } catch { /* not started or already gone */ }
      rmSync(d, { recursive: true, force: true })
    })
    execFileSync(`${BIN}/rabbitmq-server`, ['-detached'], { env: this.env(), stdio: 'ignore' })
    this.started = true
  }

  async awaitStartup (): Promise<void> {
    await waitFor(async () => {
      await this.ctl('await_startup', '--timeout', '5')
      return true
    }, { timeoutMs: 60000, intervalMs: 300, what: `private broker ${this.node} to start` })
  }

  ctl (...args: string[]): Promise<{ stdout: string }> {
    return run(`${BIN}/rabbitmqctl`, ['-n', this.node, ...args], { env: this.env(), timeout: 30000 })
  }

  /** The node's log lines that `keep` selects, the last `n` of them (for a failed test's report). */
  logLines (keep: (line: string) => boolean, n: number): string[] {
    try {
      return readFileSync(join(this.dir, 'log', `${this.node}.log`), 'utf8').split('\n').filter(keep).slice(-n)
    } catch {
      return []
    }
  }

  /** The beam process, for kill -9 / STOP / CONT. */
  pid (): number {
    return Number(readFileSync(join(this.dir, 'pid'), 'utf8').trim())
  }

  async stopApp (): Promise<void> {
    await this.ctl('stop_app')
  }

  async startApp (): Promise<void> {
    await this.ctl('start_app')
    await this.awaitStartup()
  }

  /** kill -9 of the node, then a cold start on the same data. */
  async killAndRestart (): Promise<void> {
    await this.kill()
    await this.restart()
  }

  /** kill -9 of the node; resolves once the process is gone. */
  async kill (): Promise<void> {
    const pid = this.pid()
    process.kill(pid, 'SIGKILL')
    await waitFor(() => { try { process.kill(pid, 0); return false } catch { return true } }, { what: 'the broker to die' })
  }

  /** A cold start on the same data, after kill(). */
  async restart (): Promise<void> {
    execFileSync(`${BIN}/rabbitmq-server`, ['-detached'], { env: this.env(), stdio: 'ignore' })
    await this.awaitStartup()
  }

  async stop (): Promise<void> {
    if (this.started) {
      try {
        await this.ctl('stop')
      } catch {
        try { process.kill(this.pid(), 'SIGKILL') } catch { /* already gone */ }
      }
    }
    rmSync(this.dir, { recursive: true, force: true })
    this.forget()
  }
}
