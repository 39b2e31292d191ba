// Admin endpoints, the same on both modes: /metrics, /livez (and its alias
// /healthz), /readyz, /startupz and POST /drain. Liveness never depends on
// the broker or the app: a broker outage must not restart every pod.
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { sendJson } from './respond'
import { onClientError } from './server'

export interface AdminHooks {
  readonly metrics: () => Promise<{ contentType: string, body: string }>
  /** Why the process is not ready, or null when it is. */
  readonly notReadyReason: () => string | null
  /** Why the process should be restarted, or null while it is alive (a broker outage never makes it so). */
  readonly notLiveReason?: () => string | null
  /** Startup: config valid and admin port listening (never waits on broker or app). */
  readonly started?: () => boolean
  /** Stops intake and finishes in-flight work; resolves when drained. Absent: /drain is not served here. */
  readonly drain?: () => Promise<void>
}

export const ADMIN_PATHS = new Set(['/metrics', '/healthz', '/livez', '/readyz', '/startupz', '/drain'])

/** Answers an admin path; returns false for any other path. */
export function handleAdmin (req: IncomingMessage, res: ServerResponse, hooks: AdminHooks): boolean {
  const q = (req.url ?? '/').indexOf('?')
  const path = q === -1 ? req.url ?? '/' : (req.url ?? '/').slice(0, q)
  switch (path) {
    case '/metrics':
      hooks.metrics().then(({ contentType, body }) => {
        res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) })
        res.end(body)
      }, (err: Error) => sendJson(res, 500, { error: 'Internal Server Error', detail: `metrics unavailable: ${err.message}`, code: 'RQ_ERR_INTERNAL' }))
      return true
    case '/healthz':
    case '/livez': {
      const reason = hooks.notLiveReason?.() ?? null
      sendJson(res, reason === null ? 200 : 503, reason === null ? { status: 'ok' } : { status: 'failing', reason })
      return true
    }
    case '/startupz': {
      const started = hooks.started?.() ?? true
      sendJson(res, started ? 200 : 503, { status: started ? 'started' : 'starting' })
      return true
    }
    case '/readyz': {
      const reason = hooks.notReadyReason()
      sendJson(res, reason === null ? 200 : 503, reason === null ? { status: 'ready' } : { status: 'not ready', reason })
      return true
    }
    case '/drain':
      if (hooks.drain === undefined) return false
      if (req.method !== 'POST' && req.method !== 'GET') {
        sendJson(res, 405, { error: 'Method Not Allowed', detail: 'use POST /drain', code: 'RQ_ERR_METHOD_NOT_ALLOWED' })
        return true
      }
      // Kubernetes preStop hooks wait on this answer, so it comes once the drain is done.
      hooks.drain().then(() => sendJson(res, 200, { status: 'drained' }), (err: Error) => sendJson(res, 500, { error: 'Internal Server Error', detail: err.message, code: 'RQ_ERR_INTERNAL' }))
      return true
    default:
      return false
  }
}

export function createAdminServer (hooks: AdminHooks): Server {
  const server = http.createServer({ headersTimeout: 10000, requestTimeout: 30000, connectionsCheckingInterval: 1000 }, (req, res) => {
    if (!handleAdmin(req, res, hooks)) sendJson(res, 404, { error: 'Not Found', detail: 'unknown admin path', code: 'RQ_ERR_NOT_FOUND' })
  })
  // A /drain request waits for the whole drain; it must not be cut by the default 5 s idle timeout.
  server.keepAliveTimeout = 5000
  server.on('clientError', onClientError)
  return server
}
