// Rewrites the generated parts of README.md (the configuration table).
import { readFileSync, writeFileSync } from 'node:fs'
import { withEnvTable } from '../src/config/table'

const readme = readFileSync('README.md', 'utf8')
writeFileSync('README.md', withEnvTable(readme))
console.log('README.md configuration table updated')
