// Run with `node --expose-gc --import tsx`: an enqueuer and a dequeuer
// in-process, rounds of load through them, and the heap after a full GC at
// the end of each round, printed as one JSON line. RSS moves with the GC's
// sizing and a young process's warm-up; the heap after GC moves only with
// what is really kept.
import { Agent, request } from 'undici'
import { connectBroker, uniqueService } from './broker'
import { startEcho } from './echo'
import { startTestDequeuer, startTestEnqueuer } from './relay'

const ROUNDS = Number(process.argv[2] ?? 6)
const PER_ROUND = Number(process.argv[3] ?? 3000)

async function main (): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('run with --expose-gc')
  const broker = await connectBroker()
  const service = uniqueService('heap')
  const echo = await startEcho()
  const deq = await startTestDequeuer(service, echo.url)
  await deq.consuming
  const enq = await startTestEnqueuer()
  const agent = new Agent({ connections: 32 })
  const body = Buffer.alloc(256, 'x')
  const heapMb: number[] = []
  let failed = 0
  try {
    for (let round = 0; round < ROUNDS; round++) {
      let inflight = 0
      let sent = 0
      await new Promise<void>((resolve) => {
        const next = (): void => {
          while (inflight < 32 && sent < PER_ROUND) {
            inflight++
            sent++
            request(`${enq.url}/${service}/x`, { method: 'POST', body, dispatcher: agent })
              .then(async (r) => { if (r.statusCode !== 200) failed++; await r.body.dump() })
              .catch(() => { failed++ })
              .finally(() => {
                inflight--
                if (sent >= PER_ROUND && inflight === 0) resolve()
                else next()
              })
          }
        }
        next()
      })
      // The echo service keeps what it received; that is the test's memory, not relayq's.
      echo.received.length = 0
      gc()
      await new Promise((resolve) => setTimeout(resolve, 100))
      gc()
      heapMb.push(process.memoryUsage().heapUsed / 1e6)
    }
    console.log(JSON.stringify({ heapMb, failed, inflight: enq.admission.inflight, pending: enq.context.pool.pendingReplies, buffered: enq.context.sender.bufferedBytes }))
  } finally {
    await agent.close()
    await enq.close()
    await deq.close()
    await echo.close()
    await broker.deleteService(service)
    await broker.close()
  }
}

main().then(() => process.exit(0), (err: unknown) => { console.error(err); process.exit(1) })
