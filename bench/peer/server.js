#!/usr/bin/env node
// The bench's baseline: what a user would write instead of Sluice. One Node process, the
// official `stripe` library's constructEvent, a `pg` pool insert with ON CONFLICT DO
// NOTHING, and 200 only after the insert.
//
//   PORT=… DATABASE_URL=postgres://… WEBHOOK_SECRET=whsec_… node server.js
'use strict';

const http = require('http');
const { Pool } = require('pg');
const Stripe = require('stripe');

const stripe = Stripe('sk_test_unused');
const secret = process.env.WEBHOOK_SECRET;
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 10 });

// Answers with an explicit Content-Length (no chunked encoding), like Sluice.
function answer(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

async function main() {
  await pool.query(
    'CREATE TABLE IF NOT EXISTS stripe_events (id TEXT PRIMARY KEY, type TEXT NOT NULL, payload JSONB NOT NULL)'
  );
  const server = http.createServer((req, res) => {
    if (req.method === 'GET') {
      answer(res, 200, '"ok"');
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks);
      let event;
      try {
        event = stripe.webhooks.constructEvent(body, req.headers['stripe-signature'], secret);
      } catch (e) {
        answer(res, 401, '{"error":"bad signature"}');
        return;
      }
      try {
        const r = await pool.query(
          'INSERT INTO stripe_events (id, type, payload) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
          [event.id, event.type, body.toString('utf8')]
        );
        answer(res, 200, r.rowCount === 1 ? '{"accepted":1,"duplicates":0}' : '{"accepted":0,"duplicates":1}');
      } catch (e) {
        answer(res, 500, '{"error":"storage"}');
      }
    });
  });
  server.keepAliveTimeout = 60000;
  server.listen(Number(process.env.PORT), '127.0.0.1');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
