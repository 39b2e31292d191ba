// The largest message the broker takes (max_message_size). A publish over it
// closes the publishing channel (406), failing every request waiting on that
// channel, so the enqueuer's body limit must fit under it: checked at
// start-up, where a wrong setting is one clear message instead of 503s later.
// RabbitMQ 3.10 does not advertise the limit; without RABBITMQ_MAX_MESSAGE_BYTES
// it is taken as the default of the broker's version.

const MiB = 1024 * 1024

/** max_message_size's default: 128 MiB up to 3.13, 16 MiB from 4.0. */
export function defaultMessageLimit (brokerVersion: unknown): number {
  const major = typeof brokerVersion === 'string' || Buffer.isBuffer(brokerVersion) ? Number.parseInt(String(brokerVersion), 10) : Number.NaN
  return Number.isFinite(major) && major < 4 ? 128 * MiB : 16 * MiB
}

/**
 * Room the message's properties and headers take beside the body: the
 * request's own headers (bounded by ENQUEUER_MAX_HEADER_BYTES) plus relayq's
 * control headers and properties.
 */
export const PROPERTIES_ALLOWANCE_BYTES = 4096

/** A problem when a body of `maxBodyBytes` and headers of `maxHeaderBytes` cannot fit, else null. */
export function bodyLimitProblem (maxBodyBytes: number, maxHeaderBytes: number, brokerLimit: number, limitFrom: string): string | null {
  const need = maxBodyBytes + maxHeaderBytes + PROPERTIES_ALLOWANCE_BYTES
  if (need <= brokerLimit) return null
  return `ENQUEUER_MAX_BODY_BYTES (${maxBodyBytes}) plus ENQUEUER_MAX_HEADER_BYTES (${maxHeaderBytes}) and ${PROPERTIES_ALLOWANCE_BYTES} bytes of properties exceed the broker's largest message (${brokerLimit} bytes, ${limitFrom}): ` +
    'the broker would refuse such a request and close the channel carrying it. Lower ENQUEUER_MAX_BODY_BYTES, or set RABBITMQ_MAX_MESSAGE_BYTES to the broker\'s max_message_size if it was raised'
}

/** At connect, when RABBITMQ_MAX_MESSAGE_BYTES is 0: the same check against the default of the broker's version. */
export function bodyLimitProblemAtConnect (maxBodyBytes: number, maxHeaderBytes: number, configuredLimit: number, brokerVersion: unknown): string | null {
  if (configuredLimit > 0) return null // checked when the configuration was loaded
  return bodyLimitProblem(maxBodyBytes, maxHeaderBytes, defaultMessageLimit(brokerVersion), `the default of RabbitMQ ${String(brokerVersion)}`)
}
