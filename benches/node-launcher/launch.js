#!/usr/bin/env node
// The Node launcher kvrun's benchmark compares against: what a team writes from the Key Vault
// quickstart for JavaScript (dotenv, a credential, SecretClient.getSecret) to start its app with
// its secrets.
//
//   node launch.js [--all] -- COMMAND [ARGS...]
//
// It loads .env into process.env with dotenv (as the quickstart does), replaces every variable
// whose value is a Key Vault secret URL (https://NAME.vault.azure.net/secrets/NAME[/VERSION]) by
// the secret's value, one getSecret per reference and one SecretClient per vault, then spawns the
// command with that environment and exits with its exit code (128 + N if a signal killed it).
//
// By default it awaits each getSecret in turn, as the quickstart's code does. `--all` starts them
// all at once and awaits Promise.all, as a user who thought about start-up time would write it.
//
// The credential is AzureCliCredential (`az account get-access-token`): DefaultAzureCredential
// would probe the managed identity endpoint (IMDS, 169.254.169.254) on a machine without one,
// which the benchmark must never contact.
"use strict";

const { spawn } = require("node:child_process");
const { constants } = require("node:os");
const dotenv = require("dotenv");
const { AzureCliCredential } = require("@azure/identity");
const { SecretClient, parseKeyVaultSecretIdentifier } = require("@azure/keyvault-secrets");

const REFERENCE = /^https:\/\/[0-9a-z-]+\.vault\.azure\.net\/secrets\/[0-9a-z-]+(\/[0-9a-z]*)?$/i;

async function main() {
  const separator = process.argv.indexOf("--");
  if (separator < 0 || separator + 1 >= process.argv.length) {
    console.error("usage: node launch.js [--all] -- COMMAND [ARGS...]");
    process.exit(2);
  }
  const all = process.argv.slice(2, separator).includes("--all");
  const [program, ...args] = process.argv.slice(separator + 1);

  dotenv.config({ quiet: true });
  const credential = new AzureCliCredential();
  const clients = new Map();
  const clientFor = (vaultUrl) => {
    if (!clients.has(vaultUrl)) {
      clients.set(vaultUrl, new SecretClient(vaultUrl, credential));
    }
    return clients.get(vaultUrl);
  };

  const references = Object.entries(process.env).filter(([, value]) => REFERENCE.test(value));
  const resolve = async ([variable, id]) => {
    const { vaultUrl, name, version } = parseKeyVaultSecretIdentifier(id);
    const secret = await clientFor(vaultUrl).getSecret(name, { version });
    process.env[variable] = secret.value;
  };
  if (all) {
    await Promise.all(references.map(resolve));
  } else {
    for (const reference of references) {
      await resolve(reference);
    }
  }

  const child = spawn(program, args, { stdio: "inherit" });
  child.on("error", (error) => {
    console.error(`cannot start ${program}: ${error.message}`);
    process.exit(127);
  });
  child.on("exit", (code, signal) => {
    process.exit(code ?? 128 + (constants.signals[signal] ?? 0));
  });
}

main().catch((error) => {
  console.error("An error occurred:", error.message);
  process.exit(1);
});
