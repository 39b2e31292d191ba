// `npm run demo`: an enqueuer, a dequeuer and a sample service on this
// machine, against the local RabbitMQ; prints a curl line that works.
// Ports: DEMO_PORT (enqueuer, 8000), DEMO_ADMIN_PORT (dequeuer admin, 8001),
// DEMO_SERVICE_PORT (sample service, 8080).
import { spawn, execFileSync } from 'node:child_process'
import { requireBroker, brokerAddress } from './broker-check.mjs'

await requireBroker()
execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' })

const port = process.env.DEMO_PORT ?? '8000'
const adminPort = process.env.DEMO_ADMIN_PORT ?? '8001'
const servicePort = process.env.DEMO_SERVICE_PORT ?? '8080'
const { host, port: amqpPort } = brokerAddress()
const rabbit = process.env.RABBITMQ_URL ?? `amqp://guest:guest@${host}:${amqpPort}`
const children = []

function start (name, args, env) {
  const child = spawn(process.execPath, args, { env: { ...process.env, RABBITMQ_URL: rabbit, LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const prefix = (chunk) => chunk.toString().split('\n').filter(Boolean).map((l) => `[${name}] ${l}`).join('\n') + '\n'
  child.stdout.on('data', (c) => process.stdout.write(prefix(c)))
  child.stderr.on('data', (c) => process.stderr.write(prefix(c)))
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`[${name}] exited with ${code ?? signal}; stopping the demo`)
      stop(1)
    }
  })
  children.push(child)
}

async function waitReady (url) {
  for (let i = 0; i < 100; i++) {
    try {
      const res = await fetch(url)
      if (res.status === 200) return
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`not ready: ${url}`)
}

// Ctrl-C is a success; a child that dies or never gets ready is a failure, and
// the demo's exit status says so (scripts and CI read it).
let stopping = false
function stop (status) {
  if (stopping) return
  stopping = true
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM')
  const exited = children.map((c) => c.exitCode !== null || c.signalCode !== null ? null : new Promise((resolve) => c.once('exit', resolve)))
  Promise.all(exited).then(() => process.exit(status))
  setTimeout(() => process.exit(status), 5000).unref()
}
process.on('SIGINT', () => stop(0))
process.on('SIGTERM', () => stop(0))

start('service', ['examples/hello-service.mjs'], { PORT: servicePort })
start('dequeuer', ['dist/relayq.js'], { RELAYQ_MODE: 'dequeuer', SERVICE_NAME: 'hello', DOWNSTREAM_URL: `http://127.0.0.1:${servicePort}`, METRICS_PORT: adminPort, METRICS_HOST: '127.0.0.1' })
start('enqueuer', ['dist/relayq.js'], { RELAYQ_MODE: 'enqueuer', ENQUEUER_PORT: port, ENQUEUER_HOST: '127.0.0.1' })
try {
  await waitReady(`http://127.0.0.1:${adminPort}/readyz`)
  await waitReady(`http://127.0.0.1:${port}/readyz`)
} catch (err) {
  console.error(`${err.message}: is something else using ports ${port}, ${adminPort} or ${servicePort}? Set DEMO_PORT, DEMO_ADMIN_PORT, DEMO_SERVICE_PORT.`)
  stop(1)
}
if (!stopping) console.log(`
relayq demo is running: enqueuer :${port} -> RabbitMQ (hello_requests) -> dequeuer -> service :${servicePort}

  curl -s -X POST http://127.0.0.1:${port}/hello/greet?name=you -d 'hi there'

  metrics:   curl -s http://127.0.0.1:${port}/metrics | grep enqueuer_
             curl -s http://127.0.0.1:${adminPort}/metrics | grep dequeuer_
  Ctrl-C stops everything.
`)
