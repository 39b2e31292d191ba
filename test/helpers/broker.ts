// The real RabbitMQ the tests talk to, and a few broker-side probes.
import { randomBytes } from 'node:crypto'
import * as amqp from 'amqplib'

export const AMQP_URL = process.env.RELAYQ_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672'

/** A service name no other test (or earlier run) uses. */
export function uniqueService (prefix = 'svc'): string {
  return `t-${prefix}-${randomBytes(4).toString('hex')}`
}

export interface TestBroker {
  readonly conn: amqp.ChannelModel
  /** A fresh channel per call: a failed passive check closes its channel. */
  channel: () => Promise<amqp.Channel>
  depth: (queue: string) => Promise<number>
  consumers: (queue: string) => Promise<number>
  exists: (queue: string) => Promise<boolean>
  publish: (queue: string, body: Buffer, options: amqp.Options.Publish) => Promise<void>
  /** Reads every message of a queue without removing any (get, then nack-requeue all at the end). */
  peekAll: (queue: string) => Promise<amqp.GetMessage[]>
  /** Removes and returns every message of a queue. */
  drain: (queue: string) => Promise<amqp.GetMessage[]>
  deleteService: (service: string) => Promise<void>
  close: () => Promise<void>
}

export async function connectBroker (): Promise<TestBroker> {
  const conn = await amqp.connect(AMQP_URL)
  conn.on('error', () => {})
  const channel = async (): Promise<amqp.Channel> => {
    const ch = await conn.createChannel()
    ch.on('error', () => {})
    return ch
  }
  const withCh = async <T>(fn: (ch: amqp.Channel) => Promise<T>): Promise<T> => {
    const ch = await channel()
    try {
      return await fn(ch)
    } finally {
      await ch.close().catch(() => {})
    }
  }
  return {
    conn,
    channel,
    depth: (q) => withCh(async (ch) => (await ch.checkQueue(q)).messageCount),
    consumers: (q) => withCh(async (ch) => (await ch.checkQueue(q)).consumerCount),
    exists: async (q) => {
      try {
        await withCh((ch) => ch.checkQueue(q))
        return true
      } catch {
        return false
      }
    },
    publish: (q, body, options) => withCh(async (ch) => {
      const confirm = await conn.createConfirmChannel()
      confirm.on('error', () => {})
      try {
        await new Promise<void>((resolve, reject) => confirm.sendToQueue(q, body, options, (err) => (err ? reject(err) : resolve())))
      } finally {
        await confirm.close().catch(() => {})
      }
      void ch
    }),
    peekAll: (q) => withCh(async (ch) => {
      const out: amqp.GetMessage[] = []
      for (;;) {
        const m = await ch.get(q, { noAck: false })
        if (m === false) break
        out.push(m)
      }
      ch.nackAll(true)
      return out
    }),
    drain: (q) => withCh(async (ch) => {
      const out: amqp.GetMessage[] = []
      for (;;) {
        const m = await ch.get(q, { noAck: true })
        if (m === false) break
        out.push(m)
      }
      return out
    }),
    deleteService: async (service) => {
      const names = [`${service}_requests`, `${service}_requests.dlq`]
      for (const d of [100, 200, 400, 500, 800, 1000, 1600, 2000, 3200, 4000, 5000, 8000, 10000, 16000, 20000, 30000]) names.push(`${service}_requests.retry.${d}`)
      for (const q of names) await withCh((ch) => ch.deleteQueue(q)).catch(() => {})
    },
    close: async () => { await conn.close().catch(() => {}) },
  }
}
