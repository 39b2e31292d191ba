// Replaced at bundle time by esbuild's define; tests running from source see the package version.
declare const RELAYQ_VERSION: string | undefined
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const VERSION: string = typeof RELAYQ_VERSION === 'string' ? RELAYQ_VERSION : (require('../package.json') as { version: string }).version

// The broker client's version is part of the security story (fixes landed in
// 2.3.0 and 2.3.1): it is logged at start-up. The bundle has it compiled in.
declare const RELAYQ_AMQPLIB_VERSION: string | undefined
export const AMQPLIB_VERSION: string = typeof RELAYQ_AMQPLIB_VERSION === 'string' ? RELAYQ_AMQPLIB_VERSION : amqplibVersionFromDisk()

function amqplibVersionFromDisk (): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fs = require('node:fs') as typeof import('node:fs')
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const path = require('node:path') as typeof import('node:path')
  // Through a variable, so the bundler (which compiles the version in) does not try to resolve it.
  const resolve = (id: string): string => require.resolve(id)
  return (JSON.parse(fs.readFileSync(path.join(path.dirname(resolve('amqplib')), 'package.json'), 'utf8')) as { version: string }).version
}
