// ENQUEUER_WORKERS=2: one worker killed with kill -9 is forked again by the
// primary, and the shared port keeps answering. The new worker takes
// connections only once its broker connection is up; before that fix the
// primary handed it connections it could only answer 503 (the broker is not
// connected yet) while its sibling could have served them.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import http from 'node:http'
import { after, before, describe, it } from 'node:test'
import { connectBroker, uniqueService, type TestBroker } from '../helpers/broker'
import { echoBody, startEcho, type Echo } from '../helpers/echo'
import { freePort, spawnRelay, waitReady, type RelayProcess } from '../helpers/process'
import { startTestDequeuer, type TestDequeuer } from '../helpers/relay'
import { waitFor } from '../helpers/wait'

/** One request on a connection of its own, so node:cluster spreads them over the workers. */
function fresh (url: string): Promise<number | 'socket-error' | 'timeout'> {
  return new Promise((resolve) => {
    const req = http.request(url, { method: 'POST', agent: false, headers: { connection: 'close', 'content-type': 'text/plain' } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
      res.on('error', () => resolve('socket-error'))
    })
    req.on('error', () => resolve('socket-error'))
    req.setTimeout(5000, () => { resolve('timeout'); req.destroy() })
    req.end('ping')
  })
}

function children (pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

describe('a cluster worker restarted after kill -9', () => {
  let broker: TestBroker
  let echo: Echo
  let deq: TestDequeuer
  let enq: RelayProcess
  let url = ''
  const service = uniqueService('wrestart')

  before(async () => {
    broker = await connectBroker()
    echo = await startEcho(echoBody)
    deq = await startTestDequeuer(service, echo.url)
    await deq.consuming
    const port = await freePort()
    enq = spawnRelay({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', ENQUEUER_WORKERS: '2', LOG_LEVEL: 'warn' })
    url = `http://127.0.0.1:${port}`
    await waitReady(url, 20000)
    await waitFor(() => children(enq.pid).length === 2, { timeoutMs: 20000, what: 'two workers' })
  })

  after(async () => {
    enq.kill('SIGKILL')
    await enq.exited
    await deq.close()
    await echo.close()
    await broker.deleteService(service)
    await broker.close()
  })

  it('answers every request while the new worker starts: no 503 from a worker without its broker connection', async () => {
    const before = children(enq.pid)
    const statuses = new Map<number | 'socket-error' | 'timeout', number>()
    const count = (s: number | 'socket-error' | 'timeout'): void => { statuses.set(s, (statuses.get(s) ?? 0) + 1) }
    // Ordinary traffic before the kill, so the comparison after it means something.
    for (let i = 0; i < 20; i++) count(await fresh(`${url}/${service}/warm`))
    process.kill(before[0]!, 'SIGKILL')
    let replacement: number | undefined
    let afterRestart = 0
    const deadline = Date.now() + 60_000
    // Keep the load on until the new worker has been up for 300 requests: it must share them without a 503.
    while (afterRestart < 300 && Date.now() < deadline) {
      const s = await fresh(`${url}/${service}/load`)
      count(s)
      if (replacement === undefined) {
        replacement = children(enq.pid).find((p) => !before.includes(p))
      } else {
        afterRestart++
      }
    }
    assert.ok(replacement !== undefined, 'the primary forked a new worker')
    assert.equal(afterRestart, 300, 'traffic ran on after the restart')
    const summary = JSON.stringify(Object.fromEntries(statuses))
    assert.equal(statuses.get(503) ?? 0, 0, `answers: ${summary}`)
    // One request may be lost with the killed worker: node:cluster may already have handed its connection over
    // (it is then cut, or hangs until the client's timeout). Every other one is answered by the service.
    const total = [...statuses.values()].reduce((a, b) => a + b, 0)
    assert.ok((statuses.get(200) ?? 0) >= total - 1, `answers: ${summary}`)
  })
})
