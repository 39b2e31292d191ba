// The service behind every benchmark target: answers each request with its
// own body, after DELAY_MS (0 by default). Batch calls on /batch answer every
// item. PORT picks the port.
'use strict'
const http = require('node:http')

const delay = Number(process.env.DELAY_MS ?? 0)
const later = (fn) => (delay > 0 ? setTimeout(fn, delay) : fn())
const fillers = new Map()
const filler = (n) => {
  if (!fillers.has(n)) fillers.set(n, Buffer.alloc(n, 'y'))
  return fillers.get(n)
}

http.createServer((req, res) => {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    const body = Buffer.concat(chunks)
    if (req.url === '/batch' && req.method === 'GET') {
      res.end(JSON.stringify({ batch_size: Number(process.env.BATCH_SIZE ?? 10) }))
      return
    }
    if (req.url === '/batch') {
      const items = JSON.parse(body.toString()).requests
      const answer = JSON.stringify(items.map((i) => ({ correlation_id: i.correlation_id, status: 'success', status_code: 200, content: i.body })))
      later(() => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(answer) })
      return
    }
    // x-bench-response-bytes: answer that many bytes instead of the request body (the response-size scenarios).
    const size = Number(req.headers['x-bench-response-bytes'] ?? -1)
    const answer = size >= 0 ? filler(size) : body
    later(() => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': answer.length })
      res.end(answer)
    })
  })
}).listen(Number(process.env.PORT ?? 9100), '127.0.0.1')
