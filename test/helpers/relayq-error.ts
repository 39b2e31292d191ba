// The shape every answer relayq makes itself must have, whichever path made
// it (the handler, the raw socket writer for parser errors, a reply timeout).
import assert from 'node:assert/strict'

interface AnyAnswer {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: Buffer | string
}

/** Status, JSON content type, `x-relayq-error` and exactly {error, detail, code}, all strings. */
export function assertRelayqError (res: AnyAnswer, status: number, code: string): { error: string, detail: string, code: string } {
  const text = res.body.toString()
  assert.equal(res.status, status, text)
  assert.equal(res.headers['x-relayq-error'], code, text)
  assert.match(String(res.headers['content-type']), /^application\/json/)
  const body = JSON.parse(text) as { error: string, detail: string, code: string }
  assert.deepEqual(Object.keys(body).sort(), ['code', 'detail', 'error'])
  assert.equal(body.code, code)
  assert.equal(typeof body.error, 'string')
  assert.equal(typeof body.detail, 'string')
  return body
}

const LEAKS: Array<[string, RegExp]> = [
  ['a stack trace', /\bat [^\s]+ \(|\.(?:js|ts):\d+|\n\s+at /],
  ['a broker URL', /amqps?:\/\//i],
  ['a reply queue name', /amq\.rabbitmq\.reply-to|amq\.gen-/i],
  ['an IPv4 address', /\b\d{1,3}(?:\.\d{1,3}){3}\b/],
  // Bracketed, full, or compressed (`::`) forms: a time of day like 14:08:02 is none of them.
  ['an IPv6 address', /\[[0-9a-f:.]+\]|\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b|(?:[0-9a-f]{1,4})?::(?:[0-9a-f]{1,4}|ffff:)?/i],
  ['a JavaScript error name', /\b(?:Range|Type|Reference|Syntax)Error\b/],
]

/** Nothing in a body an attacker could use to map the inside. */
export function assertNothingLeaks (body: string, what = 'body'): void {
  for (const [name, re] of LEAKS) assert.doesNotMatch(body, re, `${what} contains ${name}: ${body}`)
}
