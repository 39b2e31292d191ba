// A tiny service for the demo: answers every request with a JSON greeting
// that shows what arrived (method, path, headers, body).
import http from 'node:http'

const port = Number(process.env.PORT ?? 8080)
http.createServer((req, res) => {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString()
    const answer = JSON.stringify({ greeting: 'hello from the service behind relayq', method: req.method, path: req.url, body, pid: process.pid }, null, 2) + '\n'
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(answer)
  })
}).listen(port, '127.0.0.1', () => console.log(`hello service on http://127.0.0.1:${port}`))
