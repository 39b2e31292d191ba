// Where a job callback may go. A callback URL is chosen by the client, so it
// must not turn relayq into a proxy towards what only relayq can reach: the
// allow-list (ASYNC_CALLBACK_ALLOWED_HOSTS) names host AND port (a bare host
// means the scheme's default port), and whatever the list says, a callback
// never connects to relayq's own listeners (a POST to its admin /drain
// drained it) or to link-local and unspecified addresses (cloud metadata).
// Names are checked again on the address actually connected to, through the
// request's DNS lookup, so a name that resolves to an allowed address at
// submit and to 169.254.169.254 later (DNS rebinding) is refused.
import dns from 'node:dns'
import { BlockList, isIP, type LookupFunction } from 'node:net'
import { networkInterfaces } from 'node:os'

/** Never a callback target: link-local (metadata services live there), unspecified, "this network". */
const FORBIDDEN = new BlockList()
FORBIDDEN.addSubnet('169.254.0.0', 16, 'ipv4')
FORBIDDEN.addSubnet('0.0.0.0', 8, 'ipv4')
FORBIDDEN.addSubnet('fe80::', 10, 'ipv6')
FORBIDDEN.addAddress('::', 'ipv6')
FORBIDDEN.addAddress('fd00:ec2::254', 'ipv6')

const LOOPBACK = new BlockList()
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK.addAddress('::1', 'ipv6')

export class CallbackRefused extends Error {
  override readonly name = 'CallbackRefused'
  readonly code = 'RQ_CALLBACK_REFUSED'
}

interface Allowed { readonly host: string, readonly port: number | null }

export class CallbackTargets {
  private readonly allowed: Allowed[]
  private readonly ownPorts = new Set<number>()

  constructor (entries: readonly string[]) {
    this.allowed = entries.map(parseEntry)
  }

  /** relayq's own listening ports (public, admin/metrics): never a callback target on a local address. */
  addOwnPorts (ports: ReadonlyArray<number | null | undefined>): void {
    for (const p of ports) if (typeof p === 'number' && p > 0) this.ownPorts.add(p)
  }

  /** Why a callback URL is refused at submit, or null. */
  refusal (raw: string): string | null {
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      return 'is not a URL'
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be http or https'
    if (url.username !== '' || url.password !== '') return 'must not carry credentials'
    const host = url.hostname.toLowerCase()
    const port = portOf(url)
    if (!this.allowed.some((a) => a.host === host && (a.port ?? defaultPort(url)) === port)) {
      return 'names a host and port not listed in ASYNC_CALLBACK_ALLOWED_HOSTS'
    }
    const literal = unbracket(host)
    return isIP(literal) === 0 ? null : this.addressRefusal(literal, port)
  }

  /** Why connecting to this address and port is refused, or null. */
  addressRefusal (address: string, port: number): string | null {
    const ip = unmap(address)
    const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4'
    if (FORBIDDEN.check(ip, family)) return `${ip} is a link-local or unspecified address`
    if (this.ownPorts.has(port) && isLocal(ip, family)) return `${ip}:${port} is one of relayq's own listeners`
    return null
  }

  /** A DNS lookup for one callback request that only ever yields addresses allowed for this port. */
  lookupFor (port: number): LookupFunction {
    return (hostname, options, callback) => {
      dns.lookup(hostname, { family: options.family ?? 0, all: true }, (err, addresses) => {
        if (err !== null) return callback(err, '', 0)
        const ok = addresses.filter((a) => this.addressRefusal(a.address, port) === null)
        if (ok.length === 0) {
          const why = addresses.map((a) => this.addressRefusal(a.address, port)).join('; ')
          return callback(new CallbackRefused(`${hostname} resolves only to refused addresses: ${why}`), '', 0)
        }
        if (options.all === true) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, ok)
        const first = ok[0] as dns.LookupAddress
        callback(null, first.address, first.family)
      })
    }
  }
}

export function portOf (url: URL): number {
  return url.port === '' ? defaultPort(url) : Number(url.port)
}

function defaultPort (url: URL): number {
  return url.protocol === 'https:' ? 443 : 80
}

/** `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address; hosts written as URLs write them. */
function parseEntry (entry: string): Allowed {
  const e = entry.trim().toLowerCase()
  const bracketed = /^(\[[0-9a-f:.]+\])(?::(\d{1,5}))?$/.exec(e)
  if (bracketed !== null) return { host: canonical(bracketed[1] as string), port: bracketed[2] === undefined ? null : Number(bracketed[2]) }
  if (isIP(e) === 6) return { host: canonical(`[${e}]`), port: null }
  const m = /^([^:]+):(\d{1,5})$/.exec(e)
  return m === null ? { host: canonical(e), port: null } : { host: canonical(m[1] as string), port: Number(m[2]) }
}

function canonical (host: string): string {
  try {
    return new URL(`http://${host}/`).hostname
  } catch {
    return host
  }
}

function unbracket (host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
}

/** IPv4-mapped IPv6 (::ffff:127.0.0.1, or ::ffff:7f00:1 as URLs write it) is checked as the IPv4 address it is. */
function unmap (address: string): string {
  const a = address.toLowerCase()
  const dotted = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(a)
  if (dotted !== null) return dotted[1] as string
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(a)
  if (hex === null) return a
  const hi = parseInt(hex[1] as string, 16)
  const lo = parseInt(hex[2] as string, 16)
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
}

/** Loopback, or an address of one of this machine's interfaces (listeners on 0.0.0.0 answer on all of them). */
function isLocal (ip: string, family: 'ipv4' | 'ipv6'): boolean {
  if (LOOPBACK.check(ip, family)) return true
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (unmap(a.address).toLowerCase() === ip) return true
  }
  return false
}
