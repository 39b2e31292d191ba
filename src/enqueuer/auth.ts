// Optional inbound authentication: a static list of bearer tokens read from
// ENQUEUER_AUTH_TOKENS_FILE, compared in constant time.
import { createHash, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'

export class TokenSet {
  private readonly digests: Buffer[]

  constructor (tokens: readonly string[]) {
    // Comparing fixed-length digests keeps the comparison constant-time whatever the token lengths.
    this.digests = tokens.map(digest)
  }

  static fromFile (path: string): TokenSet {
    const tokens = readFileSync(path, 'utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
    if (tokens.length === 0) throw new Error(`ENQUEUER_AUTH_TOKENS_FILE: ${path} holds no token`)
    return new TokenSet(tokens)
  }

  /** True when the Authorization header carries one of the tokens as `Bearer <token>`. */
  accepts (authorization: string | undefined): boolean {
    if (authorization === undefined) return false
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
    if (m === null) return false
    const d = digest(m[1] as string)
    let ok = false
    // No early exit: every token is compared, so timing says nothing about which matched.
    for (const known of this.digests) ok = timingSafeEqual(known, d) || ok
    return ok
  }
}

function digest (token: string): Buffer {
  return createHash('sha256').update(token).digest()
}

/** Constant-time equality of two secrets of any length. */
export function secretsEqual (a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b))
}
