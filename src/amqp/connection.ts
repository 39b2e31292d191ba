// One logical broker connection that keeps itself up: it connects to each
// configured broker in turn (starting at a random one of a cluster's list, so
// that replicas spread over the nodes; the next one after a failure or a lost
// connection), reconnects with capped exponential backoff and
// full jitter, and re-runs the owner's setup (channels, consumers, topology)
// on every new connection. A broker restart, a channel error or a network
// stall never crashes the process; only a setup error the owner marks fatal
// (a queue declared with other arguments) stops it.
import { EventEmitter } from 'node:events'
import * as amqp from 'amqplib'
import type { ChannelModel } from 'amqplib'
import type { Logger } from 'pino'
import type { BrokerConfig } from '../config/types'
import { installFrameGuard } from './frame-guard'
import { adoptConnection } from './internals'
import { classify } from './errors'
import { captureHandshakeCloseCodes } from './handshake'

/** How often a broker that stays unreachable is logged (each line counts the attempts since the last). */
const RECONNECT_LOG_INTERVAL_MS = 5000

export type ConnectionName = 'enqueuer' | 'consume' | 'publish' | 'dlq' | 'declare'

/** Thrown by a setup function when retrying cannot help (e.g. inequivalent queue arguments). */
export class FatalSetupError extends Error {
  override readonly name = 'FatalSetupError'
}

export interface ConnectionEvents {
  /** A connection is up and setup has completed. */
  up: [ChannelModel]
  /** The connection went away (or setup failed); a reconnect is scheduled. */
  down: [Error]
  blocked: [string]
  unblocked: []
  /** Setup failed in a way retrying cannot fix; the connection gives up. */
  fatal: [Error]
}

export interface BrokerConnectionOptions {
  readonly name: ConnectionName
  readonly broker: BrokerConfig
  readonly logger: Logger
  readonly setup: (conn: ChannelModel) => Promise<void>
  readonly onReconnect?: () => void
}

export class BrokerConnection extends EventEmitter<ConnectionEvents> {
  private conn: ChannelModel | null = null
  private isUp = false
  private isBlocked = false
  private stopped = false
  private attempt = 0
  private urlIndex: number
  private timer: NodeJS.Timeout | null = null
  private hasConnectedOnce = false
  private lastFailureLogAt = 0
  private failedSinceLog = 0

  constructor (private readonly opts: BrokerConnectionOptions) {
    super()
    // Every process starting at the first URL put all connections on one node; a random start spreads them.
    this.urlIndex = Math.floor(Math.random() * opts.broker.urls.length)
  }

  get up (): boolean {
    return this.isUp
  }

  get blocked (): boolean {
    return this.isBlocked
  }

  get model (): ChannelModel | null {
    return this.isUp ? this.conn : null
  }

  start (): void {
    void this.connect()
  }

  /** Resolves once the connection is up, or rejects on a fatal setup error. */
  waitUntilUp (): Promise<void> {
    if (this.isUp) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const onUp = (): void => { this.off('fatal', onFatal); resolve() }
      const onFatal = (err: Error): void => { this.off('up', onUp); reject(err) }
      this.once('up', onUp)
      this.once('fatal', onFatal)
    })
  }

  /**
   * Another connection to the same broker just came up: the broker is back,
   * so a reconnect waiting out its jittered backoff tries now. The dequeuer's
   * consuming and publishing connections each reconnect on their own, and
   * neither waits for the other's timer.
   */
  retryNow (): void {
    if (this.timer === null || this.stopped || this.isUp) return
    clearTimeout(this.timer)
    this.timer = null
    void this.connect()
  }

  async close (): Promise<void> {
    this.stopped = true
    if (this.timer !== null) clearTimeout(this.timer)
    const conn = this.conn
    this.conn = null
    if (conn !== null) {
      try {
        await conn.close()
      } catch {
        // already closed
      }
    }
    this.markDown(new Error('closed'), false)
  }

  private async connect (): Promise<void> {
    if (this.stopped) return
    const { broker, logger, name } = this.opts
    const url = broker.urls[this.urlIndex % broker.urls.length] as string
    let conn: ChannelModel
    captureHandshakeCloseCodes()
    try {
      conn = await amqp.connect(connectionOptions(url, broker), socketOptions(url, broker, name))
    } catch (err) {
      if (this.giveUpAtStartup(err as Error, url)) return
      this.retry(err as Error, url)
      return
    }
    if (this.stopped) {
      conn.close().catch(() => {})
      return
    }
    adoptConnection(conn, logger, name)
    this.conn = conn
    conn.on('error', (err: Error) => logger.warn({ connection: name, err: err.message }, 'broker connection error'))
    conn.on('close', (err?: Error) => this.onClose(conn, err))
    conn.on('blocked', (reason: string) => {
      this.isBlocked = true
      logger.warn({ connection: name, reason }, 'broker blocked the connection')
      this.emit('blocked', reason)
    })
    conn.on('unblocked', () => {
      this.isBlocked = false
      logger.info({ connection: name }, 'broker unblocked the connection')
      this.emit('unblocked')
    })
    try {
      await this.opts.setup(conn)
    } catch (err) {
      if (err instanceof FatalSetupError) {
        this.stopped = true
        conn.close().catch(() => {})
        this.emit('fatal', err)
        return
      }
      logger.warn({ connection: name, err: (err as Error).message }, 'broker setup failed; reconnecting')
      conn.close().catch(() => {})
      return
    }
    if (this.conn !== conn) return
    this.attempt = 0
    this.lastFailureLogAt = 0
    this.failedSinceLog = 0
    this.isUp = true
    if (this.hasConnectedOnce) this.opts.onReconnect?.()
    this.hasConnectedOnce = true
    logger.info({ connection: name, broker: redactUrl(url) }, 'connected to broker')
    this.emit('up', conn)
  }

  /**
   * Before the first connection, an error that retrying cannot fix (a broker
   * certificate that does not verify, refused credentials, a missing vhost)
   * stops start-up once every configured broker has given one: the operator
   * gets one clear message and a non-zero exit rather than endless retries.
   * Once connected, the same errors are retried (a rotated certificate, a
   * recreated user).
   */
  private readonly permanentFailures = new Set<string>()
  private giveUpAtStartup (err: Error, url: string): boolean {
    if (this.hasConnectedOnce) return false
    const why = permanentReason(err)
    if (why === null) return false
    this.permanentFailures.add(url)
    if (this.permanentFailures.size < this.opts.broker.urls.length) return false
    this.stopped = true
    this.emit('fatal', new FatalSetupError(`cannot connect to the broker (${redactUrl(url)}): ${why}`))
    return true
  }

  private onClose (conn: ChannelModel, err?: Error): void {
    if (this.conn !== conn) return
    this.conn = null
    this.isBlocked = false
    const reason = err ?? new Error('connection closed by the broker')
    this.markDown(reason, true)
    // A lost connection usually means a lost node: reconnect to the next one rather than wait for this one.
    this.urlIndex++
    if (!this.stopped) this.retry(reason, null)
  }

  private markDown (err: Error, log: boolean): void {
    if (!this.isUp) return
    this.isUp = false
    if (log) this.opts.logger.warn({ connection: this.opts.name, err: err.message }, 'disconnected from broker')
    this.emit('down', err)
  }

  private retry (err: Error, failedUrl: string | null): void {
    if (this.stopped) return
    const { broker, logger, name } = this.opts
    if (failedUrl !== null) {
      // The next attempt goes to the next broker of a cluster list.
      this.urlIndex++
      // The first failure at once, then one line per interval with the count:
      // an outage stays visible in the logs without flooding them.
      this.failedSinceLog++
      const now = Date.now()
      if (now - this.lastFailureLogAt >= RECONNECT_LOG_INTERVAL_MS) {
        logger.warn({ connection: name, broker: redactUrl(failedUrl), err: err.message, code: classify(err).code, attempts: this.failedSinceLog }, 'cannot connect to broker')
        this.lastFailureLogAt = now
        this.failedSinceLog = 0
      }
    }
    const cap = Math.min(broker.reconnectMaxMs, broker.reconnectInitialMs * 2 ** Math.min(this.attempt, 20))
    this.attempt++
    // Full jitter: replicas that lost the broker together do not come back in lockstep.
    const delay = Math.round(Math.random() * cap)
    this.timer = setTimeout(() => {
      this.timer = null
      void this.connect()
    }, delay)
  }
}

/** A plain one-shot connection (the dlq tool): the first broker of the list that answers. */
export async function connectOnce (broker: BrokerConfig, name: ConnectionName): Promise<ChannelModel> {
  let last: Error | null = null
  captureHandshakeCloseCodes()
  for (const url of broker.urls) {
    try {
      const conn = await amqp.connect(connectionOptions(url, broker), socketOptions(url, broker, name))
      conn.on('error', () => {})
      installFrameGuard(conn)
      return conn
    } catch (err) {
      last = err as Error
    }
  }
  throw new Error(`cannot connect to the broker: ${last === null ? 'no URL' : permanentReason(last) ?? last.message}`, { cause: last })
}

function connectionOptions (raw: string, broker: BrokerConfig): amqp.Options.Connect {
  const url = new URL(raw)
  const path = url.pathname
  return {
    protocol: url.protocol.replace(':', ''),
    hostname: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port === '' ? (url.protocol === 'amqps:' ? 5671 : 5672) : Number(url.port),
    username: decodeURIComponent(url.username === '' ? 'guest' : url.username),
    password: decodeURIComponent(url.password === '' ? 'guest' : url.password),
    vhost: path === '' || path === '/' ? '/' : decodeURIComponent(path.slice(1)),
    heartbeat: broker.heartbeatSeconds,
    frameMax: 131072,
  }
}

function socketOptions (raw: string, broker: BrokerConfig, name: ConnectionName): Record<string, unknown> {
  const url = new URL(raw)
  const opts: Record<string, unknown> = {
    // amqplib leaves Nagle on; small frames then wait ~40 ms each hop.
    noDelay: true,
    timeout: broker.connectTimeoutMs,
    keepAlive: true,
    clientProperties: { connection_name: `relayq-${name}` },
  }
  if (url.protocol === 'amqps:') {
    const { tls } = broker
    if (tls.ca !== undefined) opts.ca = [tls.ca]
    if (tls.cert !== undefined) opts.cert = tls.cert
    if (tls.key !== undefined) opts.key = tls.key
    if (tls.passphrase !== undefined) opts.passphrase = tls.passphrase
    if (tls.servername !== undefined) opts.servername = tls.servername
    if (tls.insecure) opts.rejectUnauthorized = false
  }
  return opts
}

/** Why retrying cannot help, or null when it might. */
export function permanentReason (err: Error): string | null {
  const { kind, code } = classify(err)
  switch (kind) {
    // An alert comes from the broker: it refused our side of the handshake
    // (no client certificate, or one it does not trust), not the other way round.
    case 'tls_refused_by_broker': return `the broker refused the TLS handshake (${code}); if it requires a client certificate, set RABBITMQ_CERT_FILE and RABBITMQ_KEY_FILE to one signed by a CA it trusts`
    case 'tls_certificate': return `the broker's TLS certificate was refused (${code}); set RABBITMQ_CA_FILE to the CA that signed it, or check RABBITMQ_TLS_SERVERNAME`
    case 'tls_not_tls': return `the port did not answer in TLS (${code}): is this a TLS port? An amqps:// URL needs the broker's TLS listener (5671 by default); use amqp:// for a plain one`
    case 'access_refused': return 'the broker refused the credentials (403 ACCESS_REFUSED); check RABBITMQ_USER and RABBITMQ_PASSWORD (or RABBITMQ_URL)'
    case 'not_allowed': return 'the virtual host does not exist or this user may not use it (530 NOT_ALLOWED); check RABBITMQ_VHOST (or the path of RABBITMQ_URL)'
    default: return null
  }
}

/** scheme://host:port/vhost: what a log line may say about a broker URL. */
export function redactUrl (raw: string): string {
  try {
    const url = new URL(raw)
    return `${url.protocol}//${url.host}${url.pathname}`
  } catch {
    return '(invalid url)'
  }
}
