// Replaced at bundle time by esbuild's define; tests running from source see the package version.
declare const RELAYQ_VERSION: string | undefined
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const VERSION: string = typeof RELAYQ_VERSION === 'string' ? RELAYQ_VERSION : (require('../package.json') as { version: string }).version
