#!/usr/bin/env node
// A Processing Engine's webhook receiver for the end-to-end tests: every request is
// verified with the official Standard Webhooks library (npm `standardwebhooks`) against
// each secret it is given — all must verify, so during a rotation a request must carry a
// valid signature for the old and for the new secret — then recorded.
//
//   node webhook-receiver.mjs
//
// Prints one JSON line, {"url": URL, "control": URL}, then serves until killed.
// Control (loopback):
//   POST /secrets   {"secrets": ["whsec_…", …]}      what each request must verify with
//   POST /fail      {"count": n, "status": 503}      answer the next n requests so
//   GET  /received  {"deliveries": [{"id", "installation", "type", "content_type",
//                    "signatures", "at_ms"}…],
//                    "rejected": n, "failed": n, "last_rejection": text}
import http from 'node:http';
import { Webhook } from 'standardwebhooks';

let secrets = [];
let failCount = 0;
let failStatus = 503;
const deliveries = [];
let rejected = 0;
let failed = 0;
let lastRejection = null;

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

const receiver = http.createServer(async (req, res) => {
  const body = await readBody(req);
  if (secrets.length === 0) {
    rejected += 1;
    lastRejection = 'no secret configured';
    return json(res, 401, { error: lastRejection });
  }
  let event;
  try {
    // Throws unless the signature, the id and a recent timestamp all check out.
    for (const secret of secrets) {
      event = new Webhook(secret).verify(body, req.headers);
    }
  } catch (e) {
    rejected += 1;
    lastRejection = String(e && e.message ? e.message : e);
    return json(res, 401, { error: lastRejection });
  }
  if (failCount > 0) {
    failCount -= 1;
    failed += 1;
    return json(res, failStatus, { error: 'failing on purpose' });
  }
  if (event.id !== req.headers['webhook-id']) {
    rejected += 1;
    lastRejection = `webhook-id ${req.headers['webhook-id']} is not the event id ${event.id}`;
    return json(res, 400, { error: lastRejection });
  }
  deliveries.push({
    id: event.id,
    installation: event.sluiceinstallation,
    type: event.type,
    content_type: req.headers['content-type'],
    signatures: req.headers['webhook-signature'].split(' ').length,
    at_ms: Date.now(),
  });
  json(res, 200, { ok: true });
});

const control = http.createServer(async (req, res) => {
  const body = await readBody(req);
  if (req.method === 'POST' && req.url === '/secrets') {
    secrets = JSON.parse(body).secrets;
    return json(res, 200, { ok: true });
  }
  if (req.method === 'POST' && req.url === '/fail') {
    const b = JSON.parse(body);
    failCount = b.count;
    failStatus = b.status ?? 503;
    return json(res, 200, { ok: true });
  }
  if (req.method === 'GET' && req.url === '/received') {
    return json(res, 200, { deliveries, rejected, failed, last_rejection: lastRejection });
  }
  json(res, 404, { error: 'no such route' });
});

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

const [port, controlPort] = await Promise.all([listen(receiver), listen(control)]);
process.stdout.write(
  JSON.stringify({ url: `http://127.0.0.1:${port}/hook`, control: `http://127.0.0.1:${controlPort}` }) + '\n',
);
