// Is RabbitMQ reachable? Used by `npm test` and `npm run demo` to fail with a
// clear message instead of a wall of connection errors.
import net from 'node:net'

export function brokerAddress () {
  const url = new URL(process.env.RELAYQ_TEST_AMQP_URL ?? process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672')
  return { host: url.hostname || '127.0.0.1', port: Number(url.port || 5672) }
}

export function checkBroker (timeoutMs = 3000) {
  const { host, port } = brokerAddress()
  return new Promise((resolve) => {
    const socket = net.connect(port, host)
    const done = (ok) => { socket.destroy(); resolve(ok) }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.on('connect', () => done(true))
    socket.on('error', () => done(false))
  })
}

export async function requireBroker () {
  if (await checkBroker()) return
  const { host, port } = brokerAddress()
  console.error(`RabbitMQ is not reachable at ${host}:${port}.
Start it, then run this again:
  - installed locally:  rabbitmq-server -detached   (or: sudo systemctl start rabbitmq-server)
  - with Docker:        docker run -d --name rabbitmq -p 5672:5672 -p 15672:15672 rabbitmq:3.13-management
Point relayq at another broker with RABBITMQ_URL (tests: RELAYQ_TEST_AMQP_URL).`)
  process.exit(1)
}
