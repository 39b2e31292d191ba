// Rewrites the generated parts of the docs (the configuration table).
import { readFileSync, writeFileSync } from 'node:fs'
import { TABLE_PAGE, withEnvTable } from '../src/config/table'

writeFileSync(TABLE_PAGE, withEnvTable(readFileSync(TABLE_PAGE, 'utf8')))
console.log(`${TABLE_PAGE} configuration table updated`)
