#!/usr/bin/env node
// The App Configuration launcher kvrun's benchmark compares against: what a team writes with the
// official JS provider (@azure/app-configuration-provider) to start its app with a store's
// settings and their Key Vault references resolved.
//
//   node appconfig.js [--parallel] ENDPOINT KEY_FILTER TRIM_PREFIX -- COMMAND [ARGS...]
//
// It loads the key-values that KEY_FILTER selects (no label), TRIM_PREFIX trimmed, each Key Vault
// reference resolved by the provider with SecretClient (one after another, the provider's default;
// `--parallel` sets keyVaultOptions.parallelSecretResolutionEnabled), puts every setting in the
// environment, then spawns the command and exits with its exit code (128 + N if a signal killed
// it). Replica discovery (a DNS SRV lookup) is off: the benchmark reaches nothing but the fake.
//
// The credential is AzureCliCredential (`az account get-access-token`), as in launch.js: no
// managed identity endpoint is ever probed.
"use strict";

const { spawn } = require("node:child_process");
const { constants } = require("node:os");
const { AzureCliCredential } = require("@azure/identity");
const { load } = require("@azure/app-configuration-provider");

async function main() {
  const separator = process.argv.indexOf("--");
  const options = process.argv.slice(2, separator);
  const parallel = options[0] === "--parallel";
  const [endpoint, keyFilter, trim] = parallel ? options.slice(1) : options;
  if (separator < 0 || separator + 1 >= process.argv.length || !trim) {
    console.error("usage: node appconfig.js [--parallel] ENDPOINT KEY_FILTER TRIM_PREFIX -- COMMAND [ARGS...]");
    process.exit(2);
  }
  const [program, ...args] = process.argv.slice(separator + 1);

  const credential = new AzureCliCredential();
  const settings = await load(endpoint, credential, {
    selectors: [{ keyFilter }],
    trimKeyPrefixes: [trim],
    keyVaultOptions: { credential, parallelSecretResolutionEnabled: parallel },
    replicaDiscoveryEnabled: false,
  });
  for (const [key, value] of settings) {
    process.env[key] = typeof value === "string" ? value : JSON.stringify(value);
  }

  const child = spawn(program, args, { stdio: "inherit" });
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(signal, () => child.kill(signal));
  }
  child.on("error", (error) => {
    console.error(`appconfig.js: cannot start ${program}: ${error.message}`);
    process.exit(127);
  });
  child.on("exit", (code, signal) => {
    process.exit(code ?? 128 + constants.signals[signal]);
  });
}

main().catch((error) => {
  console.error(`appconfig.js: ${error.message}`);
  process.exit(1);
});
