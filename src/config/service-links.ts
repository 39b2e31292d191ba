// Kubernetes gives every pod, for each Service in its namespace, variables
// named after the Service: one called `rabbitmq` sets
// RABBITMQ_PORT=tcp://10.96.0.12:5672, one called `redis` sets REDIS_PORT,
// one called `enqueuer` or `metrics` sets ENQUEUER_PORT or METRICS_PORT, all
// in the same form. Those names are relayq's (and ProxyMQ's) port variables,
// so without this a neighbouring Service would stop relayq at start-up. A
// value a person sets is a number; a value in this form is a service link,
// and relayq reads the variable as unset (with a warning at start-up).
// Variables the deployment sets explicitly always win over service links.
import type { Env } from './load'

const LINK = /^(tcp|udp|sctp):\/\/\S+:\d{1,5}$/

/** Whether `value` of variable `name` is a Kubernetes service link rather than a setting. */
export function isServiceLink (name: string, value: string): boolean {
  return name.endsWith('_PORT') && LINK.test(value)
}

/** One line per port variable that relayq ignores because it holds a service link. */
export function serviceLinkNotices (env: Env, names: readonly string[]): string[] {
  const out: string[] = []
  for (const name of names) {
    const value = env[name]
    if (value !== undefined && isServiceLink(name, value)) {
      out.push(`${name}=${value} looks like a Kubernetes service link (a Service in this namespace is named like the variable) and is ignored; the default applies. Set ${name} explicitly, or enableServiceLinks: false in the pod spec, to silence this`)
    }
  }
  return out
}
