// Prints what the npm dotenv package's `dotenv.parse` makes of each file named on the command
// line, as one JSON object: { "<file basename>": [["KEY", "value"], ...], ... }.
// The pairs are `Object.entries(dotenv.parse(buffer))`, so they keep the object's key order.
// Used by tests/dotenv_differential.rs; install dotenv first with `npm ci --prefix tests/dotenv`.
'use strict'

const fs = require('fs')
const path = require('path')

let dotenv
let installed
try {
  dotenv = require('dotenv')
  installed = require('dotenv/package.json').version
} catch (err) {
  console.error(`cannot load dotenv (${err.code || err.message}): run \`npm ci --prefix tests/dotenv\``)
  process.exit(2)
}

const pinned = require('./package.json').dependencies.dotenv
if (installed !== pinned) {
  console.error(`dotenv ${installed} is installed but package.json pins ${pinned}: run \`npm ci --prefix tests/dotenv\``)
  process.exit(2)
}

const out = {}
for (const file of process.argv.slice(2)) {
  const name = path.basename(file)
  if (Object.prototype.hasOwnProperty.call(out, name)) {
    console.error(`two files are named ${name}`)
    process.exit(2)
  }
  out[name] = Object.entries(dotenv.parse(fs.readFileSync(file)))
}
process.stdout.write(JSON.stringify(out) + '\n')
