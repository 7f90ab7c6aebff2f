#!/usr/bin/env node
// The differential check of kvrun's fake App Configuration store (tests/it/appconfig.rs): the
// official JS client lists a store, lists it again with the pages' ETags, and reads one key, with
// an access key: the fake's HMAC verifier judges the JS SDK's own signatures, and its 304s must
// lead the JS client on to the next page as the service's do.
//
//   APPCONFIG_CONNECTION_STRING=… NODE_EXTRA_CA_CERTS=ca.pem node list.js KEY_FILTER KEY LABEL
//
// Prints one JSON line: {"listed":[{key,label,value,contentType}…],"again":[status…],"got":{…}} or
// {"error":{"statusCode":N,"message":"…"}}. `*.localhost` names are looked up as 127.0.0.1 (the
// fake's names; glibc does not resolve them, and this check must reach nothing but loopback).
"use strict";

const dns = require("node:dns");
const lookup = dns.lookup;
dns.lookup = (host, options, callback) => {
  if (typeof options === "function") {
    callback = options;
    options = {};
  }
  if (host === "localhost" || host.endsWith(".localhost")) {
    const opts = typeof options === "number" ? { family: options } : options;
    return opts.all
      ? process.nextTick(callback, null, [{ address: "127.0.0.1", family: 4 }])
      : process.nextTick(callback, null, "127.0.0.1", 4);
  }
  return lookup(host, options, callback);
};

const { AppConfigurationClient } = require("@azure/app-configuration");

async function main() {
  const [keyFilter, key, label] = process.argv.slice(2);
  const client = new AppConfigurationClient(process.env.APPCONFIG_CONNECTION_STRING, {
    retryOptions: { maxRetries: 0 },
  });
  const selector = { keyFilter, labelFilter: "\0" };
  const listed = [];
  const pageEtags = [];
  for await (const page of client.listConfigurationSettings(selector).byPage()) {
    // 1.13.0 leaves a 200 page's `etag` unset; its raw response carries the header (a plain
    // object of lower-cased names).
    pageEtags.push(page.etag ?? page._response.headers.etag);
    for (const setting of page.items) {
      listed.push({
        key: setting.key,
        label: setting.label ?? null,
        value: setting.value,
        contentType: setting.contentType ?? null,
      });
    }
  }
  // Listed again with each page's ETag, as a provider's refresh does: the statuses it saw. A
  // 304 has no body; the client reads the next page's link from the 304's Link header.
  const again = [];
  for await (const page of client.listConfigurationSettings({ ...selector, pageEtags }).byPage()) {
    again.push(Number(page._response.status));
  }
  const one = await client.getConfigurationSetting({ key, label });
  const got = { key: one.key, label: one.label ?? null, value: one.value };
  console.log(JSON.stringify({ listed, again, got }));
}

main().catch((error) => {
  console.log(
    JSON.stringify({ error: { statusCode: error.statusCode ?? null, message: String(error.message) } }),
  );
});
