#!/usr/bin/env bash
# Runs kvrun's main job offline: starts the bundled fake Key Vault + Entra ID (real TLS, a CA made
# on the spot), then `kvrun -- node index.js` in examples/node-app, as a service principal.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# The first build takes a few minutes on two cores; cargo shows its progress (later runs: seconds).
echo "demo: building kvrun and the fake vault (release; the first time takes a few minutes)" >&2
cargo build --release -p kvrun -p kvrun-fake

tmp=$(mktemp -d)
fake_pid=
cleanup() { [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

target/release/kvrun-fake --port 47443 --ca-out "$tmp/ca.pem" \
  --secrets examples/demo-secrets.json --client demo-client:demo-client-secret >"$tmp/ready" &
fake_pid=$!
# The fake prints one line when it listens.
for _ in $(seq 1 200); do
  grep -q '^ready' "$tmp/ready" 2>/dev/null && break
  kill -0 "$fake_pid" 2>/dev/null || { echo "the fake vault did not start" >&2; exit 1; }
  sleep 0.05
done
grep -q '^ready' "$tmp/ready" || { echo "the fake vault did not become ready" >&2; exit 1; }

cd examples/node-app
# env -i: only what a container would be given. *.localhost names resolve to this machine.
env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
  SSL_CERT_FILE="$tmp/ca.pem" \
  AZURE_TENANT_ID=00000000-0000-0000-0000-000000000001 \
  AZURE_CLIENT_ID=demo-client AZURE_CLIENT_SECRET=demo-client-secret \
  AZURE_AUTHORITY_HOST=https://login.localhost:47443 \
  KVRUN_VAULT_SUFFIX=vault.localhost \
  "$root/target/release/kvrun" -v -- node index.js
