// The baseline relayq must beat: a minimal single-purpose bridge, NOT the
// product. amqplib with TCP no-delay, direct reply-to, prefetch 200, an
// undici Pool, no metrics, no logging, no validation, no error handling to
// speak of. MODE=enqueuer|dequeuer, PORT, SERVICE, DOWNSTREAM (origin), AMQP_URL.
'use strict'
const http = require('node:http')
const { randomUUID } = require('node:crypto')
const amqp = require('amqplib')
const { Pool } = require('undici')

const url = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672'
const service = process.env.SERVICE || 'bench'
const queue = `${service}_requests`

async function enqueuer () {
  const conn = await amqp.connect(url, { noDelay: true })
  const ch = await conn.createChannel()
  const pending = new Map()
  await ch.consume('amq.rabbitmq.reply-to', (msg) => {
    const res = pending.get(msg.properties.correlationId)
    if (!res) return
    pending.delete(msg.properties.correlationId)
    const h = msg.properties.headers || {}
    res.writeHead(Number(h['x-status-code'] || 200), { 'content-type': h['content-type'] || 'application/octet-stream' })
    res.end(msg.content)
  }, { noAck: true })
  http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const id = randomUUID()
      pending.set(id, res)
      ch.publish('', queue, Buffer.concat(chunks), { correlationId: id, replyTo: 'amq.rabbitmq.reply-to', headers: { 'x-http-method': req.method } })
    })
  }).listen(Number(process.env.PORT || 8100), '127.0.0.1')
}

async function dequeuer () {
  const conn = await amqp.connect(url, { noDelay: true })
  const ch = await conn.createChannel()
  await ch.assertQueue(queue, { durable: true })
  await ch.prefetch(200)
  const pool = new Pool(process.env.DOWNSTREAM || 'http://127.0.0.1:9100', { connections: 200 })
  await ch.consume(queue, async (msg) => {
    const r = await pool.request({ path: '/', method: msg.properties.headers['x-http-method'] || 'POST', body: msg.content })
    const body = Buffer.from(await r.body.arrayBuffer())
    ch.publish('', msg.properties.replyTo, body, { correlationId: msg.properties.correlationId, headers: { 'x-status-code': String(r.statusCode), 'content-type': r.headers['content-type'] } })
    ch.ack(msg)
  })
}

(process.env.MODE === 'dequeuer' ? dequeuer() : enqueuer()).catch((err) => { console.error(err); process.exit(1) })
