// Admin endpoints, the same on both modes: /metrics, /livez (and its alias
// /healthz), /readyz, /startupz and POST /drain. Liveness never depends on
// the broker or the app: a broker outage must not restart every pod.
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { sendError, sendFailure, sendJson } from './respond'
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
      }, (err: unknown) => sendFailure(res, err, 'metrics unavailable'))
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
      // POST only: a drain ends the process, and a GET can be sent by anything that follows a link
      // (a crawler, a prefetching proxy, a job callback).
      if (req.method !== 'POST') {
        res.setHeader('allow', 'POST')
        sendError(res, 'RQ_ERR_METHOD_NOT_ALLOWED', 'use POST /drain')
        return true
      }
      // preStop hooks wait on this answer, so it comes once the drain is done; the process then exits 0.
      hooks.drain().then(() => sendJson(res, 200, { status: 'drained' }), (err: unknown) => sendFailure(res, err, 'drain failed'))
      return true
    default:
      return false
  }
}

export function createAdminServer (hooks: AdminHooks): Server {
  const server = http.createServer({ headersTimeout: 10000, requestTimeout: 30000, connectionsCheckingInterval: 1000 }, (req, res) => {
    if (!handleAdmin(req, res, hooks)) sendError(res, 'RQ_ERR_NOT_FOUND', 'unknown admin path')
  })
  // A /drain request waits for the whole drain; it must not be cut by the default 5 s idle timeout.
  server.keepAliveTimeout = 5000
  server.on('clientError', onClientError)
  return server
}
