#!/usr/bin/env node
// A real OAuth 2.0 authorization server for the end-to-end tests: the npm package
// `oauth2-mock-server` (authorization code with PKCE, refresh tokens, JWT access tokens),
// with what a production server also does and the mock leaves to its users:
//
// - PKCE is required for the authorization-code grant (the mock checks a verifier only
//   when one is sent);
// - the scopes granted are the scopes asked for at /authorize (or `--grant-scope`);
// - refresh tokens rotate: each one is good once, keeps its grant's scope, and any can be
//   revoked;
// - `--expires-in` sets the access tokens' lifetime.
//
//   node oauth-server.mjs [--expires-in SECONDS] [--grant-scope "a b"]
//
// Prints one JSON line, {"issuer": URL, "control": URL}, then serves until killed. The
// control server (loopback) answers GET /stats (token requests by grant type, refused
// ones) and POST /revoke-refresh-tokens (every refresh token issued so far stops working).
import http from 'node:http';
import { OAuth2Server } from 'oauth2-mock-server';

function arg(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : undefined;
}

const expiresIn = arg('--expires-in');
const grantScope = arg('--grant-scope');

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');

const scopesByCode = new Map();
// Each live refresh token, with the scope of the grant it refreshes (a refresh keeps it).
const liveRefreshTokens = new Map();
const stats = { authorization_code: 0, refresh_token: 0, refused: 0, last_refused: null };

server.service.on('beforeAuthorizeRedirect', (redirect, req) => {
  const code = redirect.url.searchParams.get('code');
  if (code) scopesByCode.set(code, req.query.scope ?? '');
});

server.service.on('beforeResponse', (response, req) => {
  const body = req.body ?? {};
  const refuse = (error, description) => {
    stats.refused += 1;
    stats.last_refused = error;
    response.statusCode = 400;
    response.body = { error, error_description: description };
  };
  if (body.grant_type === 'authorization_code') {
    stats.authorization_code += 1;
    if (!body.code_verifier) return refuse('invalid_request', 'PKCE code_verifier is required');
    response.body.scope = grantScope ?? scopesByCode.get(body.code) ?? '';
    scopesByCode.delete(body.code);
  } else if (body.grant_type === 'refresh_token') {
    stats.refresh_token += 1;
    const scope = liveRefreshTokens.get(body.refresh_token);
    if (scope === undefined) {
      return refuse('invalid_grant', 'the refresh token is invalid, used or revoked');
    }
    liveRefreshTokens.delete(body.refresh_token);
    response.body.scope = scope;
  } else {
    return;
  }
  if (expiresIn !== undefined) response.body.expires_in = Number(expiresIn);
  liveRefreshTokens.set(response.body.refresh_token, response.body.scope);
});

await server.start(0, '127.0.0.1');
const issuer = `http://127.0.0.1:${server.address().port}`;

const control = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(stats));
  } else if (req.method === 'POST' && req.url === '/revoke-refresh-tokens') {
    liveRefreshTokens.clear();
    res.statusCode = 204;
    res.end();
  } else {
    res.statusCode = 404;
    res.end();
  }
});
control.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ issuer, control: `http://127.0.0.1:${control.address().port}` }));
});
