// What an in-process relayq writes to the broker, read back from the bytes on
// its socket: every AMQP method frame (channel.open, queue.declare, ...) and
// every basic.publish with its routing key. A refusal that "never touches the
// broker" must leave this empty; a queue depth alone cannot see a publish
// that another consumer drained, nor a passive declare. Reading the socket
// rather than amqplib's calls keeps the spy right whatever encodes the frames.
import { dirname, join } from 'node:path'
import type { ChannelModel } from 'amqplib'

interface Defs { info: (id: number) => { name: string } }
// amqplib's package exports hide lib/; the file is read by path.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const defs = require(join(dirname(require.resolve('amqplib')), 'lib', 'defs.js')) as Defs

const FRAME_METHOD = 1
const BASIC_PUBLISH = (60 << 16) | 40
const QUEUE_DECLARE = (50 << 16) | 10

type Write = (chunk: unknown, ...rest: unknown[]) => boolean
interface Stream { write: Write }

export interface Published {
  readonly exchange: string
  readonly routingKey: string
}

export interface MethodSent {
  /** AMQP method name, e.g. QueueDeclare. */
  readonly name: string
  /** queue.declare: the queue named, and whether the declare was passive. */
  readonly queue?: string
  readonly passive?: boolean
}

export class BrokerTraffic {
  /** Method frames written (basic.publish is listed under `publishes`). */
  readonly methods: MethodSent[] = []
  readonly publishes: Published[] = []
  private readonly stream: Stream
  private readonly original: Write
  private pending = Buffer.alloc(0)

  /** Watches one connection (the ChannelModel of an in-process relayq), from now on. */
  constructor (model: ChannelModel) {
    this.stream = (model as unknown as { connection: { stream: Stream } }).connection.stream
    this.original = this.stream.write
    this.stream.write = (chunk: unknown, ...rest: unknown[]) => {
      if (Buffer.isBuffer(chunk)) this.read(chunk)
      return this.original.call(this.stream, chunk, ...rest)
    }
  }

  /** Forgets what was recorded so far. */
  reset (): void {
    this.methods.length = 0
    this.publishes.length = 0
  }

  stop (): void {
    this.stream.write = this.original
  }

  private read (chunk: Buffer): void {
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    while (buf.length >= 7) {
      const size = buf.readUInt32BE(3)
      if (buf.length < 8 + size) break
      if (buf[0] === FRAME_METHOD) this.method(buf.subarray(7, 7 + size))
      buf = buf.subarray(8 + size)
    }
    this.pending = Buffer.from(buf)
  }

  private method (payload: Buffer): void {
    const id = (payload.readUInt16BE(0) << 16) | payload.readUInt16BE(2)
    // Arguments after the reserved short: short strings, then bits.
    const shortstr = (at: number): [string, number] => [payload.toString('utf8', at + 1, at + 1 + payload[at]!), at + 1 + payload[at]!]
    if (id === BASIC_PUBLISH) {
      const [exchange, next] = shortstr(6)
      const [routingKey] = shortstr(next)
      this.publishes.push({ exchange, routingKey })
      return
    }
    if (id === QUEUE_DECLARE) {
      const [queue, next] = shortstr(6)
      this.methods.push({ name: defs.info(id).name, queue, passive: (payload[next]! & 1) === 1 })
      return
    }
    this.methods.push({ name: defs.info(id).name })
  }
}
