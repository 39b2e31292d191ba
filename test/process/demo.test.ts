// `npm run demo` reports failure: a part that dies makes the demo exit non-zero,
// so a script or CI job that runs it sees the failure.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import net from 'node:net'
import { describe, it } from 'node:test'
import { AMQP_URL } from '../helpers/broker'
import { freePort } from '../helpers/process'
import { reapOnExit } from '../helpers/reaper'

describe('npm run demo', () => {
  it('exits non-zero when one of its processes fails', async () => {
    // The dequeuer's admin port is taken: it stops at start-up, before declaring anything on the broker.
    // It resets the demo's readiness polls, so no socket is left open on it.
    const taken = net.createServer((socket) => socket.destroy())
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    const takenPort = (taken.address() as net.AddressInfo).port
    try {
      const child = spawn(process.execPath, ['scripts/demo.mjs'], {
        // Not process.env: the test runner's NODE_TEST_CONTEXT would make every node below report to it.
        env: { PATH: process.env.PATH ?? '', RABBITMQ_URL: AMQP_URL, DEMO_PORT: String(await freePort()), DEMO_ADMIN_PORT: String(takenPort), DEMO_SERVICE_PORT: String(await freePort()) },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      const forget = reapOnExit(() => child.kill('SIGKILL'))
      let out = ''
      child.stdout.on('data', (c: Buffer) => { out += c.toString() })
      child.stderr.on('data', (c: Buffer) => { out += c.toString() })
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
      forget()
      assert.equal(code, 1, out)
      assert.match(out, /\[dequeuer\] exited with 1; stopping the demo/)
      assert.match(out, /METRICS_PORT/)
      assert.doesNotMatch(out, /relayq demo is running/)
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()))
    }
  })
})
