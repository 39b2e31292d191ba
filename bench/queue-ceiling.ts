// `npm run bench:queue`: how many messages one queue carries when nothing
// else limits it, for the capacity model in the README. A private RabbitMQ
// node of its own (never the shared broker); persistent 256-byte messages
// published with confirms (4 channels, windows of 200) and one consumer
// (prefetch 500, an ack every 100), for a classic and a quorum queue.
// Knob: BENCH_SECONDS (8).
import { readFileSync } from 'node:fs'
import * as amqp from 'amqplib'
import { PrivateBroker } from '../test/helpers/private-broker'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8)

/** utime + stime of a process, in clock ticks (100 a second on Linux). */
function cpuTicks (pid: number): number {
  const fields = (readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] ?? '').split(' ')
  return Number(fields[11]) + Number(fields[12])
}

async function measure (broker: PrivateBroker, type: 'classic' | 'quorum'): Promise<string> {
  const pub = await amqp.connect(broker.url)
  const sub = await amqp.connect(broker.url)
  const queue = `ceiling-${type}`
  const setup = await pub.createChannel()
  await setup.assertQueue(queue, { durable: true, arguments: type === 'quorum' ? { 'x-queue-type': 'quorum' } : {} })
  const ch = await sub.createChannel()
  await ch.prefetch(500)
  let consumed = 0
  let unacked = 0
  await ch.consume(queue, (m) => {
    if (m === null) return
    consumed++
    if (++unacked >= 100) { ch.ack(m, true); unacked = 0 }
  })
  const body = Buffer.alloc(256, 'x')
  let stop = false
  const cpu0 = cpuTicks(broker.pid())
  const t0 = Date.now()
  const publishers = Array.from({ length: 4 }, async () => {
    const cc = await pub.createConfirmChannel()
    while (!stop) {
      for (let i = 0; i < 200; i++) cc.publish('', queue, body, { persistent: true })
      await cc.waitForConfirms()
    }
  })
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000))
  stop = true
  const n = consumed
  const secs = (Date.now() - t0) / 1000
  const ticks = cpuTicks(broker.pid()) - cpu0
  await Promise.all(publishers)
  await setup.deleteQueue(queue)
  await pub.close()
  await sub.close()
  return `${type}: ${Math.round(n / secs)} msg/s through one queue; broker ${(ticks * 10000 / n).toFixed(0)} µs CPU a message, ${(ticks / 100 / secs).toFixed(2)} cores`
}

async function main (): Promise<void> {
  const broker = new PrivateBroker()
  await broker.start()
  try {
    for (const type of ['classic', 'quorum'] as const) console.log(await measure(broker, type))
  } finally {
    await broker.stop()
  }
}

main().catch((err: unknown) => { console.error(err); process.exitCode = 1 })
