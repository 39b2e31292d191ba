// Jobs across processes: a 202 survives the enqueuer being killed before the
// reply arrives (Redis store), and the workers of one enqueuer share the
// in-memory store and one sum of metrics.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { startEcho, type Echo } from '../helpers/echo'
import { send } from '../helpers/http'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'
import { startTestDequeuer, type TestDequeuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'
import { REDIS_URL } from '../helpers/redis'

interface Job { status: string, result: { body: string } }

describe('jobs and workers across processes', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  const service = uniqueService('procjobs')
  const running: RelayProcess[] = []

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho((req, res) => { setTimeout(() => { res.writeHead(200); res.end(req.body) }, 1000) })
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
  })
  after(async () => {
    for (const p of running) p.kill('SIGKILL')
    await Promise.all(running.map((p) => p.exited))
    await deq.close()
    await echo.close()
    await broker.deleteService(service)
    await broker.close()
  })

  async function enqueuer (env: Record<string, string>): Promise<{ p: RelayProcess, url: string }> {
    const port = await freePort()
    const p = spawnRelay({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env })
    running.push(p)
    const url = `http://127.0.0.1:${port}`
    await waitReady(url)
    return { p, url }
  }

  it('an enqueuer killed after answering 202 and before the reply: restarted, the job still completes (Redis)', async () => {
    const first = await enqueuer({ REDIS_URL })
    const res = await send(`${first.url}/${service}/slow`, { method: 'POST', body: 'survive', headers: { prefer: 'respond-async' } })
    assert.equal(res.status, 202)
    const id = res.json<{ job_id: string }>().job_id
    process.kill(first.p.pid, 'SIGKILL')
    await first.p.exited
    const second = await enqueuer({ REDIS_URL })
    const job = await waitFor(async () => {
      const j = (await send(`${second.url}/jobs/${id}`)).json<Job>()
      return j.status === 'completed' ? j : null
    }, { timeoutMs: 10000, what: 'the job to complete' })
    assert.equal(job.result.body, 'survive')
  })

  it('two workers share the port, the in-memory job store and one sum of metrics', async () => {
    const { p, url } = await enqueuer({ ENQUEUER_WORKERS: '2', LOG_LEVEL: 'info' })
    // Fresh connections go only to workers already listening, so a run of 200s from /readyz can come from one worker
    // while the other is still starting (and then answers 503): wait for each worker's own "ready" line.
    await waitFor(() => new Set(p.logs().filter((l) => l.msg === 'ready').map((l) => l.pid)).size === 2, { what: 'both workers ready' })
    const accepted = await Promise.all(Array.from({ length: 20 }, (_, i) => send(`${url}/${service}/w`, { method: 'POST', body: `w${i}`, headers: { prefer: 'respond-async', connection: 'close' } })))
    const ids = accepted.map((r) => { assert.equal(r.status, 202); return r.json<{ job_id: string }>().job_id })
    for (const [i, id] of ids.entries()) {
      const job = await waitFor(async () => {
        const j = (await send(`${url}/jobs/${id}`, { headers: { connection: 'close' } })).json<Job>()
        return j.status === 'completed' ? j : null
      }, { timeoutMs: 15000, what: `job ${i}` })
      assert.equal(job.result.body, `w${i}`)
    }
    // New connections go round-robin to the workers; only the primary's sum reaches 20.
    const metrics = (await send(`${url}/metrics`)).body.toString()
    assert.match(metrics, new RegExp(`enqueuer_async_jobs_created_total\\{service="${service}"\\} 20`))
  })
})
