// The request target: `/{service}[/{rest}][?query]` on the enqueuer, and the
// `{rest}?query` part joined to DOWNSTREAM_URL on the dequeuer. Both sides use
// the same path check, so a path the enqueuer accepts is one the dequeuer
// forwards, and a hand-made message cannot climb out of the service's base.
import { isValidServiceName } from '../config/parsers'

export type TargetProblem = 'RQ_ERR_INVALID_SERVICE' | 'RQ_ERR_INVALID_PATH'

export interface Target {
  readonly service: string
  /** `/{rest}?query`, `/` when empty. */
  readonly path: string
}

/** Parses an origin-form request target; absolute-form and odd shapes are refused. */
export function parseTarget (url: string): Target | TargetProblem {
  if (url.charCodeAt(0) !== 47 /* / */) return 'RQ_ERR_INVALID_PATH'
  let end = 1
  while (end < url.length) {
    const c = url.charCodeAt(end)
    if (c === 47 /* / */ || c === 63 /* ? */) break
    end++
  }
  const service = url.slice(1, end)
  if (!isValidServiceName(service)) return 'RQ_ERR_INVALID_SERVICE'
  let path: string
  if (end === url.length) path = '/'
  else if (url.charCodeAt(end) === 63) path = '/' + url.slice(end)
  else path = url.slice(end)
  return isSafeRelativePath(path) ? { service, path } : 'RQ_ERR_INVALID_PATH'
}

// A segment of one or two dots, plain or percent-encoded, between separators
// that a service may also decode or honour: `/`, an encoded `/` or `\`, and
// `;` (a path parameter: `..;/` is a dot segment to Tomcat and RFC 2396).
const DOT_SEGMENT = /(^|\/|%2f|%5c)(\.|%2e){1,2}(\/|%2f|%5c|;|$)/i

/**
 * True for `/a/b?c` style paths that stay under whatever base they are joined
 * to, even for a service that decodes `%2F` before routing: no dot segments
 * (plain or percent-encoded, `..;` included), no backslashes, no control
 * characters or spaces, no fragment, and no leading `//` (protocol-relative).
 */
export function isSafeRelativePath (pathAndQuery: string): boolean {
  if (pathAndQuery.charCodeAt(0) !== 47 || pathAndQuery.charCodeAt(1) === 47) return false
  const q = pathAndQuery.indexOf('?')
  const path = q === -1 ? pathAndQuery : pathAndQuery.slice(0, q)
  for (let i = 0; i < pathAndQuery.length; i++) {
    const c = pathAndQuery.charCodeAt(i)
    if (c <= 32 || c === 127 || c === 92 /* \ */ || c === 35 /* # */ || c > 126) return false
  }
  return !DOT_SEGMENT.test(path)
}

/** DOWNSTREAM_URL's path joined with the request's `/{rest}?query`. */
export function joinDownstreamPath (base: URL, pathAndQuery: string | null): string {
  if (pathAndQuery === null) return base.pathname + base.search
  const basePath = base.pathname.endsWith('/') ? base.pathname.slice(0, -1) : base.pathname
  const q = pathAndQuery.indexOf('?')
  const rest = q === -1 ? pathAndQuery : pathAndQuery.slice(0, q)
  const query = q === -1 ? '' : pathAndQuery.slice(q + 1)
  const baseQuery = base.search.slice(1)
  const search = baseQuery !== '' && query !== '' ? `${baseQuery}&${query}` : baseQuery + query
  return basePath + rest + (search === '' ? '' : '?' + search)
}
