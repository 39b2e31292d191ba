// Bundles src/main.ts into dist/relayq.js: one file, every dependency inside,
// runnable with `node dist/relayq.js` from any folder.
import { build } from 'esbuild'
import { chmodSync, readFileSync, statSync } from 'node:fs'

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
const amqplib = JSON.parse(readFileSync(new URL('../node_modules/amqplib/package.json', import.meta.url), 'utf8'))

await build({
  entryPoints: ['src/main.ts'],
  outfile: 'dist/relayq.js',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  minify: process.env.RELAYQ_BUILD_MINIFY !== '0',
  sourcemap: 'linked',
  legalComments: 'linked',
  // The OpenTelemetry packages' ESM builds tree-shake (their CommonJS index pulls every semantic
  // convention and the metrics SDK: +225 KiB). Checked when added: no other dependency's files change.
  mainFields: ['module', 'main'],
  conditions: ['module'],
  banner: { js: '#!/usr/bin/env node' },
  define: { RELAYQ_VERSION: JSON.stringify(pkg.version), RELAYQ_AMQPLIB_VERSION: JSON.stringify(amqplib.version) },
  logLevel: 'warning',
})
// package.json names the bundle as `bin`: with the shebang above and this mode, `./dist/relayq.js` runs as is.
chmodSync('dist/relayq.js', 0o755)
const bytes = statSync('dist/relayq.js').size
console.log(`dist/relayq.js ${(bytes / 1024).toFixed(0)} KiB`)
