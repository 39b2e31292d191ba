// A TCP proxy the tests control, for network faults between relayq and the
// broker (or the service): pass, cut every connection, refuse new ones,
// blackhole (hold sockets open, forward nothing), add latency, or limit bandwidth.
import net, { type Server, type Socket } from 'node:net'

/**
 * Sends an RST where the socket allows it. A socket whose end (shutdown) is
 * already under way gets a plain destroy: libuv refuses to reset such a socket
 * (EINVAL), Node 20 then never closes its handle, and the test process spins
 * at 100% CPU in its exit cleanup. Seen as a test file that passes and then
 * hits the file timeout (idempotency-redelivery, about 1 run in 15): the
 * leaked handles were the proxy's accepted sockets, ended and destroyed.
 */
export function reset (s: Socket): void {
  if (s.writableEnded || s.destroyed) s.destroy()
  else s.resetAndDestroy()
}

export type ProxyMode = 'pass' | 'refuse' | 'blackhole'

interface Pair { client: Socket, upstream: Socket }

export class TcpProxy {
  private server: Server | null = null
  private readonly pairs = new Set<Pair>()
  private mode: ProxyMode = 'pass'
  private latencyMs = 0
  private bytesPerSecond = 0
  /** Connections accepted since start. */
  accepted = 0

  constructor (private readonly targetHost: string, private readonly targetPort: number) {}

  get port (): number {
    const a = this.server?.address()
    return typeof a === 'object' && a !== null ? a.port : 0
  }

  get open (): number {
    return this.pairs.size
  }

  async start (port = 0): Promise<number> {
    this.server = net.createServer((client) => this.onClient(client))
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve))
    return this.port
  }

  setMode (mode: ProxyMode): void {
    this.mode = mode
    if (mode === 'blackhole') for (const p of this.pairs) this.stall(p)
    if (mode === 'pass') for (const p of this.pairs) this.resume(p)
  }

  /** Added to each chunk in each direction. */
  setLatency (ms: number): void {
    this.latencyMs = ms
  }

  /** 0 = unlimited. */
  setBandwidth (bytesPerSecond: number): void {
    this.bytesPerSecond = bytesPerSecond
  }

  /** Destroys every proxied connection (both sides see a reset). */
  cut (): void {
    for (const p of this.pairs) {
      reset(p.client)
      reset(p.upstream)
    }
    this.pairs.clear()
  }

  async stop (): Promise<void> {
    this.cut()
    await new Promise<void>((resolve) => (this.server === null ? resolve() : this.server.close(() => resolve())))
  }

  private onClient (client: Socket): void {
    if (this.mode === 'refuse') {
      client.resetAndDestroy()
      return
    }
    this.accepted++
    const upstream = net.connect(this.targetPort, this.targetHost)
    const pair: Pair = { client, upstream }
    this.pairs.add(pair)
    const drop = (): void => {
      this.pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', drop)
    upstream.on('error', drop)
    client.on('close', drop)
    upstream.on('close', drop)
    this.pipe(client, upstream)
    this.pipe(upstream, client)
    if (this.mode === 'blackhole') this.stall(pair)
  }

  private pipe (from: Socket, to: Socket): void {
    from.on('data', (chunk: Buffer) => {
      const delay = this.latencyMs + (this.bytesPerSecond > 0 ? (chunk.length / this.bytesPerSecond) * 1000 : 0)
      if (delay <= 0) {
        if (!to.write(chunk)) {
          from.pause()
          to.once('drain', () => from.resume())
        }
        return
      }
      from.pause()
      setTimeout(() => {
        if (!to.destroyed) to.write(chunk)
        from.resume()
      }, delay)
    })
  }

  private stall (p: Pair): void {
    p.client.pause()
    p.upstream.pause()
  }

  private resume (p: Pair): void {
    p.client.resume()
    p.upstream.resume()
  }
}
