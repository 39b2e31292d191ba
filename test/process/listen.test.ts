// Listeners at start-up: each one logs where it listens, and a port that is
// taken stops start-up with one line naming its variable, not a stack trace.
import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { freePort, spawnRelay } from '../helpers/process'
import { waitFor } from '../helpers/wait'

describe('listeners at start-up', () => {
  let taken: net.Server
  let takenPort = 0

  before(async () => {
    taken = net.createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    takenPort = (taken.address() as net.AddressInfo).port
  })

  after(async () => {
    await new Promise<void>((resolve) => taken.close(() => resolve()))
  })

  const cases: Array<[string, () => Promise<Record<string, string>>]> = [
    ['ENQUEUER_PORT', async () => ({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(takenPort), ENQUEUER_HOST: '127.0.0.1' })],
    ['ADMIN_PORT', async () => ({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(await freePort()), ENQUEUER_HOST: '127.0.0.1', ADMIN_PORT: String(takenPort), ADMIN_HOST: '127.0.0.1' })],
    ['KEDA_SCALER_PORT', async () => ({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(await freePort()), ENQUEUER_HOST: '127.0.0.1', KEDA_SCALER_PORT: String(takenPort) })],
    ['METRICS_PORT', async () => ({ RELAYQ_MODE: 'dequeuer', SERVICE_NAME: 'listen-check', DOWNSTREAM_URL: 'http://127.0.0.1:9', METRICS_PORT: String(takenPort), METRICS_HOST: '127.0.0.1' })],
  ]
  for (const [variable, env] of cases) {
    it(`a taken ${variable} exits 1 with a message naming it`, async () => {
      const p = spawnRelay({ ...(await env()), RABBITMQ_URL: 'amqp://127.0.0.1:1' })
      const { code } = await p.exited
      assert.equal(code, 1)
      const out = p.output()
      assert.ok(out.includes(`relayq: cannot listen on 127.0.0.1:${takenPort} (${variable}): the port is already in use`), out)
      assert.doesNotMatch(out, /\n\s+at /, 'no stack trace')
    })
  }

  it('logs a "listening on" line for each listener', async () => {
    const port = await freePort()
    const adminPort = await freePort()
    const p = spawnRelay({ RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: String(port), ENQUEUER_HOST: '127.0.0.1', ADMIN_PORT: String(adminPort), ADMIN_HOST: '127.0.0.1', RABBITMQ_URL: 'amqp://127.0.0.1:1' })
    try {
      const lines = await waitFor(() => {
        const found = p.logs().filter((l) => String(l.msg).startsWith('listening on'))
        return found.length === 2 ? found : undefined
      }, { what: 'two "listening on" lines' })
      assert.deepEqual(lines.map((l) => l.msg).sort(), [
        `listening on http://127.0.0.1:${adminPort} (ADMIN_PORT)`,
        `listening on http://127.0.0.1:${port} (ENQUEUER_PORT)`,
      ].sort())
    } finally {
      p.kill('SIGKILL')
      await p.exited
    }
  })
})
