#!/usr/bin/env node
// Prints a Stripe-Signature header for a payload, computed by the official `stripe`
// library exactly as Stripe's own test helpers do.
//
//   node sign.js --payload-file <file> --secret <whsec_...> [--timestamp <unix seconds>]
//
// The payload is read as raw bytes (UTF-8), never re-serialised.
'use strict';

const fs = require('fs');
const Stripe = require('stripe');

function arg(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : undefined;
}

const payloadFile = arg('--payload-file');
const secret = arg('--secret');
const timestamp = arg('--timestamp');
if (!payloadFile || !secret) {
  console.error('usage: sign.js --payload-file <file> --secret <secret> [--timestamp <unix seconds>]');
  process.exit(2);
}

const stripe = Stripe('sk_test_unused');
const payload = fs.readFileSync(payloadFile, 'utf8');
const opts = { payload, secret };
if (timestamp !== undefined) {
  opts.timestamp = Number(timestamp);
}
process.stdout.write(stripe.webhooks.generateTestHeaderString(opts));
