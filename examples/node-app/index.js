// The Key Vault quickstart's app, with Key Vault moved out of it.
//
// The quickstart creates a DefaultAzureCredential and a SecretClient and calls getSecret in app
// code. Under kvrun the app only reads process.env: kvrun resolved the references in .env and
// kvrun.toml before this process started, and exec'd it with the values in place.

const vaultUrl = process.env.KEYVAULT_URI; // a vault URL, not a secret: kvrun left it alone
const greeting = process.env.GREETING;
const dbPassword = process.env.DB_PASSWORD;
const databaseUrl = process.env.DATABASE_URL;

const missing = ["GREETING", "DB_PASSWORD", "DATABASE_URL"].filter((name) => !process.env[name]);
if (missing.length > 0) {
  console.error(`missing ${missing.join(", ")}: start me with kvrun -- node index.js`);
  process.exit(1);
}

console.log(`vault:        ${vaultUrl}`);
console.log(`greeting:     ${greeting}`);
// A real app never prints a secret; the demo shows its shape only.
console.log(`db password:  ${"*".repeat(dbPassword.length)} (${dbPassword.length} characters)`);
console.log(`database url: ${databaseUrl.replace(dbPassword, "****")}`);
console.log(`pid:          ${process.pid}`);
