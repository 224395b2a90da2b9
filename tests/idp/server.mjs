// Local OAuth2 identity provider for the flyteauth test suite (panva/oidc-provider v9).
//
//   node tests/idp/server.mjs
//
// Environment:
//   IDP_PORT                 port to bind on 127.0.0.1 (0 = any free port; default 0)
//   IDP_TOKEN_TTL            access-token lifetime in seconds (default 2)
//   IDP_EXIT_ON_STDIN_EOF    "1": exit when stdin closes (the Python launcher sets it,
//                            so the server dies with its parent even on SIGKILL)
//   IDP_DEVICE_INTERVAL      device-flow polling interval in seconds (default 1; 0 = no pacing)
//   IDP_REFRESH_TTL          refresh-token lifetime in seconds (default 86400)
//   IDP_TLS_CERT, IDP_TLS_KEY  PEM paths: serve HTTPS (issuer https://127.0.0.1:<port>)
//   IDP_RATE_LIMIT           token requests per second per client before 429 + Retry-After (0 = off)
//   IDP_PROFILE              entra|keycloak|okta|auth0: dress as that IdP (profiles.mjs)
//
// Once listening it prints exactly one line "READY <port>" on stdout. Everything else
// (including oidc-provider's own console.info notices) goes to stderr.
//
// Non-OIDC test control endpoints (see README.md): GET /_test/stats, POST /_test/reset,
// POST /_test/faults, POST /_test/login_mode. Interactive login/consent pages are served
// here too (/interaction/:uid), with no external resources (no web fonts).
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { text as readText } from 'node:stream/consumers';
import * as querystring from 'node:querystring';

// oidc-provider prints NOTICEs through console.info (stdout). stdout is reserved for the
// READY line, so route console.log/info to stderr before the library is loaded.
console.log = console.error;
console.info = console.error;

const { default: Provider } = await import('oidc-provider');
// Workload identity (token exchange, federated client): see workload.mjs.
const workload = await import('./workload.mjs');
// IdP profiles (IDP_PROFILE=entra|keycloak|okta|auth0): see profiles.mjs.
const profiles = await import('./profiles.mjs');
const PROFILE = process.env.IDP_PROFILE || '';
// The provider's own endpoint paths: oidc-provider's defaults, or where the profiled IdP keeps them.
const PATHS = profiles.routes(PROFILE);

const HOST = '127.0.0.1';

function intEnv(name, fallback, min, max = Number.MAX_SAFE_INTEGER) {
  const raw = process.env[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`invalid ${name} ${raw}`);
  }
  return value;
}

const PORT = intEnv('IDP_PORT', 0, 0, 65535);
const TTL = intEnv('IDP_TOKEN_TTL', 2, 1);
// RFC 8628 `interval` sent in device authorization responses; polls of one device_code
// closer together than this get `slow_down`. 0 = no pacing.
const DEVICE_INTERVAL = intEnv('IDP_DEVICE_INTERVAL', 1, 0);
// Polls arriving up to this much early still count as on time (timer / scheduling jitter).
const POLL_SLACK_MS = 50;
const REFRESH_TTL = intEnv('IDP_REFRESH_TTL', 86400, 1);
// Per-client rate limit at /token, like Okta / Auth0 / Entra ID: more than this many accepted requests
// in the last second get 429 with Retry-After. 0 = no limit.
const RATE_LIMIT = intEnv('IDP_RATE_LIMIT', 0, 0);
const rateWindows = new Map(); // client_id -> timestamps (ms) of accepted requests in the last second

// Returns the Retry-After seconds when `clientId` is over the limit, else records the request.
function overRateLimit(clientId) {
  if (RATE_LIMIT === 0) return undefined;
  const now = Date.now();
  const recent = (rateWindows.get(clientId) ?? []).filter((t) => now - t < 1000);
  rateWindows.set(clientId, recent);
  if (recent.length >= RATE_LIMIT) return Math.max(1, Math.ceil((recent[0] + 1000 - now) / 1000));
  recent.push(now);
  return undefined;
}
const TLS_CERT = process.env.IDP_TLS_CERT || undefined;
const TLS_KEY = process.env.IDP_TLS_KEY || undefined;
if (Boolean(TLS_CERT) !== Boolean(TLS_KEY)) {
  throw new Error('IDP_TLS_CERT and IDP_TLS_KEY must be set together');
}

// Resource used when a token request names neither `resource` nor `audience`.
const DEFAULT_RESOURCE = 'http://flyte.test/api';
// `audience=<anything>` (Auth0 style) is carried to the provider as
// `resource=<AUDIENCE_URN_PREFIX><urlencoded value>` so that non-URI audiences work too;
// getResourceServerInfo turns it back into aud=<value>.
const AUDIENCE_URN_PREFIX = 'urn:flyteauth-test:audience:';
const RESOURCE_SCOPE = 'all offline read';
const OIDC_SCOPES = ['openid', 'offline_access', 'profile', 'email'];
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

// Public native client: PKCE (S256) authorization code + refresh + device flow. As an
// `application_type: native` client, oidc-provider accepts its loopback redirect URIs
// with ANY port (RFC 8252 7.3), as long as scheme, host and path match exactly.
const NATIVE_CLIENT_ID = 'flyte-native';
const NATIVE_REDIRECT_URIS = ['http://127.0.0.1:53593/callback', 'http://localhost:53593/callback'];

const ciPkjwtJwks = JSON.parse(readFileSync(new URL('./ci_pkjwt_jwks.json', import.meta.url), 'utf8'));

// All registered clients live in this one array; add new ones here.
const CLIENTS = [
  {
    client_id: 'ci-basic',
    client_secret: 'ci-basic-secret-value',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: RESOURCE_SCOPE,
  },
  {
    client_id: 'ci-post',
    client_secret: 'ci-post-secret-value',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_post',
    scope: RESOURCE_SCOPE,
  },
  {
    // RFC 7523 HS256 assertion over the secret (the interop matrix's client_secret_jwt row)
    client_id: 'ci-secret-jwt',
    client_secret: 'ci-secret-jwt-secret-value-0123456789abcdef',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_jwt',
    token_endpoint_auth_signing_alg: 'HS256',
    scope: RESOURCE_SCOPE,
  },
  {
    client_id: 'ci-pkjwt',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks: ciPkjwtJwks,
    scope: RESOURCE_SCOPE,
  },
  {
    client_id: NATIVE_CLIENT_ID,
    client_name: 'Flyte native test client',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token', DEVICE_GRANT],
    response_types: ['code'],
    redirect_uris: NATIVE_REDIRECT_URIS,
    scope: [...OIDC_SCOPES, ...RESOURCE_SCOPE.split(' ')].join(' '),
  },
  ...workload.workloadClients(),
];
const CLIENTS_BY_ID = new Map(CLIENTS.map((c) => [c.client_id, c]));

const jwks = JSON.parse(readFileSync(new URL('./jwks.json', import.meta.url), 'utf8'));

// ---------------------------------------------------------------- test state
const NORMAL_LOGIN_MODE = Object.freeze({ mode: 'normal' });

const state = {
  tokenRequests: {}, // client_id -> n
  byGrant: {}, // grant_type -> n
  total: 0,
  faults: [], // FIFO queue of fault objects
  responsesDropped: 0, // drop_response faults applied (request processed, answer never sent)
  refreshReuse: 0, // presentations of an already rotated refresh token (the grant gets revoked)
  rateLimited: 0, // token requests answered 429 by IDP_RATE_LIMIT
  grantsRevoked: 0, // grants revoked for any reason (reuse detection, revocation endpoint)
  slowDown: 0, // slow_down answers sent to device_code polls
  authorizeRequests: 0, // GET/POST /auth
  deviceAuthorizations: 0, // POST /device/auth
  logins: 0, // login form submissions accepted
  consents: 0, // consent form submissions
  denied: 0, // interactions ended with an error (login mode deny, user cancel)
  lastPoll: new Map(), // device_code -> ms timestamp of its last poll
  loginMode: NORMAL_LOGIN_MODE,
};

function resetState() {
  rateWindows.clear();
  Object.assign(state, {
    tokenRequests: {},
    byGrant: {},
    total: 0,
    faults: [],
    responsesDropped: 0,
    refreshReuse: 0,
    rateLimited: 0,
    grantsRevoked: 0,
    slowDown: 0,
    authorizeRequests: 0,
    deviceAuthorizations: 0,
    logins: 0,
    consents: 0,
    denied: 0,
    lastPoll: new Map(),
    loginMode: NORMAL_LOGIN_MODE,
  });
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

function sendJson(ctx, status, body) {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.set('Cache-Control', 'no-store');
  ctx.body = JSON.stringify(body);
}

function parseBasic(header) {
  if (typeof header !== 'string') return undefined;
  const [scheme, value] = header.split(' ');
  if (!scheme || scheme.toLowerCase() !== 'basic' || !value) return undefined;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i === -1) return undefined;
  try {
    // RFC 6749 2.3.1: both parts are form-urlencoded inside the Basic header.
    return {
      id: decodeURIComponent(decoded.slice(0, i).replace(/\+/g, '%20')),
      secret: decodeURIComponent(decoded.slice(i + 1).replace(/\+/g, '%20')),
    };
  } catch {
    return undefined;
  }
}

// `iss` of an (unverified) client_assertion JWT, for the stats only.
function assertionIssuer(assertion) {
  if (typeof assertion !== 'string') return undefined;
  try {
    const payload = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8'));
    return typeof payload.iss === 'string' ? payload.iss : undefined;
  } catch {
    return undefined;
  }
}

const first = (v) => (Array.isArray(v) ? v[0] : v);

// Auth0-style `audience` -> RFC 8707 `resource` (in place). Returns true if changed.
function audienceToResource(params) {
  if (params.audience === undefined) return false;
  const audience = first(params.audience);
  delete params.audience;
  if (params.resource === undefined && audience) {
    params.resource = AUDIENCE_URN_PREFIX + encodeURIComponent(audience);
  }
  return true;
}

// The form body, read once per request and shared by the profile and test middlewares (the stream can be
// read only once); setBody replaces it for everything downstream, oidc-provider included.
async function bodyText(ctx) {
  if (ctx.state.rawBody === undefined) ctx.state.rawBody = await readText(ctx.req);
  return ctx.state.rawBody;
}

function setBody(ctx, raw) {
  ctx.state.rawBody = raw;
  ctx.req.body = raw;
}

async function readJsonBody(ctx) {
  return JSON.parse((await readText(ctx.req)) || '{}');
}

function setLoginMode(body) {
  const mode = body?.mode ?? 'normal';
  if (mode === 'normal') {
    state.loginMode = NORMAL_LOGIN_MODE;
    return undefined;
  }
  if (mode !== 'deny') return `unknown mode ${JSON.stringify(mode)} (expected "normal" or "deny")`;
  // times: how many interactions to deny (default 1); null = until reset / mode normal.
  const times = body.times === undefined ? 1 : body.times;
  if (times !== null && !(Number.isInteger(times) && times > 0)) return 'times must be a positive integer or null';
  state.loginMode = {
    mode,
    remaining: times,
    error: String(body.error ?? 'access_denied'),
    error_description: String(body.error_description ?? 'login denied by the test IdP (login_mode deny)'),
  };
  return undefined;
}

// Pops one use of the deny login mode; returns the error result or undefined.
function takeDeny() {
  const lm = state.loginMode;
  if (lm.mode !== 'deny') return undefined;
  if (lm.remaining !== null) {
    lm.remaining -= 1;
    if (lm.remaining <= 0) state.loginMode = NORMAL_LOGIN_MODE;
  }
  return { error: lm.error, error_description: lm.error_description };
}

function statsBody() {
  return {
    token_requests: state.tokenRequests,
    by_grant: state.byGrant,
    total: state.total,
    pending_faults: state.faults.length,
    refresh_reuse_detected: state.refreshReuse,
    rate_limited: state.rateLimited,
    grants_revoked: state.grantsRevoked,
    slow_down_sent: state.slowDown,
    authorize_requests: state.authorizeRequests,
    device_authorizations: state.deviceAuthorizations,
    logins: state.logins,
    consents: state.consents,
    denied: state.denied,
    login_mode: state.loginMode,
    responses_dropped: state.responsesDropped,
  };
}

async function controlEndpoints(ctx) {
  if (ctx.method === 'GET' && ctx.path === '/_test/stats') {
    sendJson(ctx, 200, statsBody());
    return true;
  }
  if (ctx.method === 'POST' && ctx.path === '/_test/reset') {
    resetState();
    sendJson(ctx, 200, { ok: true });
    return true;
  }
  if (ctx.method === 'POST' && ctx.path === '/_test/faults') {
    let parsed;
    try {
      parsed = await readJsonBody(ctx);
    } catch {
      sendJson(ctx, 400, { error: 'bad json' });
      return true;
    }
    const faults = Array.isArray(parsed) ? parsed : parsed.faults;
    if (!Array.isArray(faults) || !faults.every((f) => f && typeof f === 'object' && !Array.isArray(f))) {
      sendJson(ctx, 400, { error: 'expected {"faults": [ {...}, ... ]}' });
      return true;
    }
    state.faults.push(...faults);
    sendJson(ctx, 200, { ok: true, pending_faults: state.faults.length });
    return true;
  }
  if (ctx.method === 'POST' && ctx.path === '/_test/login_mode') {
    let parsed;
    try {
      parsed = await readJsonBody(ctx);
    } catch {
      sendJson(ctx, 400, { error: 'bad json' });
      return true;
    }
    const problem = setLoginMode(parsed);
    if (problem) {
      sendJson(ctx, 400, { error: problem });
      return true;
    }
    sendJson(ctx, 200, { ok: true, login_mode: state.loginMode });
    return true;
  }
  if (ctx.path.startsWith('/_test/')) {
    sendJson(ctx, 404, { error: 'unknown test endpoint' });
    return true;
  }
  return false;
}

// Answer a token request with a queued fault. Returns true when the response was
// produced here (the provider is then skipped).
async function applyFault(ctx, fault) {
  if (fault.delay_ms) await sleep(Number(fault.delay_ms));
  if (fault.reset) {
    // Drop the TCP connection without any response.
    ctx.req.socket.destroy();
    ctx.respond = false;
    return true;
  }
  if (fault.status === undefined || fault.status === null) return false;
  ctx.status = Number(fault.status);
  const headers = fault.headers ?? {};
  for (const [k, v] of Object.entries(headers)) ctx.set(k, String(v));
  const hasType = Object.keys(headers).some((k) => k.toLowerCase() === 'content-type');
  let { body } = fault;
  if (body === undefined || body === null) body = '';
  if (typeof body !== 'string') {
    body = JSON.stringify(body);
    if (!hasType) ctx.type = 'application/json';
  } else if (!hasType) {
    try {
      JSON.parse(body);
      ctx.type = 'application/json';
    } catch {
      ctx.type = 'text/plain';
    }
  }
  ctx.body = body;
  return true;
}

// Refresh-token requests are serialised per presented token value, so that two concurrent
// refreshes with the same token are seen one after the other: the second one then always
// hits oidc-provider's "already used" check (-> invalid_grant + grant revoked) instead of
// racing past it.
const refreshLocks = new Map(); // refresh_token value -> tail promise
// Refresh tokens that were successfully exchanged (and so rotated away). Survives /_test/reset.
const rotatedRefreshTokens = new Set();

async function withRefreshLock(key, fn) {
  const prev = refreshLocks.get(key) ?? Promise.resolve();
  let release;
  const mine = new Promise((resolve) => { release = resolve; });
  const tail = prev.then(() => mine);
  refreshLocks.set(key, tail);
  await prev;
  try {
    return await fn();
  } finally {
    release();
    if (refreshLocks.get(key) === tail) refreshLocks.delete(key);
  }
}

// ---------------------------------------------------------------- HTML pages
// Minimal pages with stable ids/names for Selenium and no external resources at all.
function esc(value) {
  return String(value ?? '')
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

function page(ctx, { status = 200, name, title, body }) {
  ctx.status = status;
  ctx.type = 'html';
  ctx.set('Cache-Control', 'no-store');
  ctx.body = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;margin:2em}input,button{display:block;margin:.5em 0}</style></head>
<body data-page="${esc(name)}">
<h1 id="title">${esc(title)}</h1>
${body}
</body>
</html>
`;
}

function loginPage(ctx, uid, details, message) {
  const clientId = details.params.client_id;
  page(ctx, {
    status: message ? 400 : 200,
    name: 'login',
    title: 'Sign-in',
    body: `<p id="client" data-client-id="${esc(clientId)}">Sign in to continue to ${esc(clientId)}</p>
${message ? `<p id="message" class="error">${esc(message)}</p>` : ''}
<form id="login-form" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label>Username <input type="text" id="login" name="login" autofocus></label>
  <label>Password <input type="password" id="password" name="password"></label>
  <button type="submit" id="submit">Sign-in</button>
</form>
<form id="abort-form" method="post" action="/interaction/${esc(uid)}/abort">
  <button type="submit" id="abort">Cancel</button>
</form>`,
  });
}

function consentPage(ctx, uid, details) {
  const { params, prompt } = details;
  const d = prompt.details ?? {};
  const scopes = [
    ...(d.missingOIDCScope ?? []),
    ...Object.values(d.missingResourceScopes ?? {}).flat(),
  ];
  page(ctx, {
    name: 'consent',
    title: 'Authorize',
    body: `<p id="client" data-client-id="${esc(params.client_id)}">${esc(params.client_id)} asks for access</p>
<ul id="scopes">${scopes.map((s) => `<li>${esc(s)}</li>`).join('')}</ul>
<form id="consent-form" method="post" action="/interaction/${esc(uid)}/confirm">
  <button type="submit" id="approve">Allow</button>
</form>
<form id="abort-form" method="post" action="/interaction/${esc(uid)}/abort">
  <button type="submit" id="deny">Deny</button>
</form>`,
  });
}

// features.deviceFlow sources (the stock ones import Google Fonts).
async function userCodeInputSource(ctx, form, out, err) {
  let name = 'device-input';
  let message = 'Enter the code displayed on your device';
  if (err && (err.userCode || err.name === 'NoCodeError')) {
    message = 'The code you entered is incorrect. Try again';
  } else if (err && err.name === 'AbortedError') {
    name = 'device-denied';
    message = 'The sign-in request was interrupted';
  } else if (err) {
    name = 'device-error';
    message = `There was an error processing your request: ${out?.error ?? ''} ${out?.error_description ?? ''}`;
  }
  page(ctx, {
    status: ctx.status && ctx.status !== 404 ? ctx.status : 200,
    name,
    title: 'Device sign-in',
    body: `<p id="message"${err ? ` class="error" data-error="${esc(err.name)}"` : ''}>${esc(message)}</p>
${form}
<button type="submit" id="submit" form="op.deviceInputForm">Continue</button>`,
  });
}

async function userCodeConfirmSource(ctx, form, client, deviceInfo, userCode) {
  page(ctx, {
    name: 'device-confirm',
    title: 'Confirm device',
    body: `<p id="client" data-client-id="${esc(client.clientId)}">${esc(client.clientName ?? client.clientId)}</p>
<p>The following code should be displayed on your device: <code id="user-code">${esc(userCode)}</code></p>
${form}
<button type="submit" id="confirm" form="op.deviceConfirmForm">Continue</button>
<button type="submit" id="abort" form="op.deviceConfirmForm" name="abort" value="yes">Abort</button>`,
  });
}

async function successSource(ctx) {
  page(ctx, {
    name: 'device-success',
    title: 'Sign-in success',
    body: `<p id="message">Your sign-in with ${esc(ctx.oidc.client.clientId)} was successful, you can now close this page.</p>`,
  });
}

async function renderError(ctx, out) {
  page(ctx, {
    status: ctx.status,
    name: 'error',
    title: 'Error',
    body: `<pre id="error" data-error="${esc(out.error)}">${esc(out.error)}: ${esc(out.error_description ?? '')}</pre>`,
  });
}

// ---------------------------------------------------------------- interactions
// Login (any non-empty username, any password) and consent, at interactions.url =
// /interaction/:uid (oidc-provider's default; devInteractions is off).
const INTERACTION_RE = /^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/;

async function finishInteraction(ctx, result, mergeWithLastSubmission) {
  // eslint-disable-next-line no-use-before-define
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission });
  ctx.set('Cache-Control', 'no-store');
  ctx.status = 303;
  ctx.redirect(returnTo);
}

async function interactionPages(ctx) {
  const m = INTERACTION_RE.exec(ctx.path);
  if (!m) return false;
  const [, uid, action] = m;
  const expected = action ? 'POST' : 'GET';
  if (ctx.method !== expected) {
    page(ctx, { status: 405, name: 'error', title: 'Method not allowed', body: '' });
    return true;
  }

  let details;
  try {
    // eslint-disable-next-line no-use-before-define
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    page(ctx, {
      status: 400, name: 'error', title: 'Error', body: `<pre id="error" data-error="interaction">${esc(err.message)}</pre>`,
    });
    return true;
  }
  if (details.uid !== uid) {
    page(ctx, { status: 400, name: 'error', title: 'Error', body: '<pre id="error" data-error="interaction">interaction mismatch</pre>' });
    return true;
  }

  const { prompt, params, session, grantId } = details;
  if (!action) {
    const deny = takeDeny();
    if (deny) {
      state.denied += 1;
      await finishInteraction(ctx, deny, false);
    } else if (prompt.name === 'login') {
      loginPage(ctx, uid, details);
    } else if (prompt.name === 'consent') {
      consentPage(ctx, uid, details);
    } else {
      page(ctx, { status: 501, name: 'error', title: 'Error', body: `<pre id="error">prompt ${esc(prompt.name)} not implemented</pre>` });
    }
    return true;
  }

  if (action === 'abort') {
    state.denied += 1;
    await finishInteraction(ctx, { error: 'access_denied', error_description: 'End-User aborted interaction' }, false);
    return true;
  }

  const form = ctx.is('application/x-www-form-urlencoded') ? querystring.parse(await readText(ctx.req)) : {};
  if (action === 'login') {
    if (prompt.name !== 'login') {
      page(ctx, { status: 400, name: 'error', title: 'Error', body: '<pre id="error">not a login prompt</pre>' });
      return true;
    }
    const login = String(first(form.login) ?? '').trim();
    if (!login) {
      loginPage(ctx, uid, details, 'Enter a username (any password works).');
      return true;
    }
    state.logins += 1;
    await finishInteraction(ctx, { login: { accountId: login } }, false);
    return true;
  }

  // action === 'confirm'
  if (prompt.name !== 'consent') {
    page(ctx, { status: 400, name: 'error', title: 'Error', body: '<pre id="error">not a consent prompt</pre>' });
    return true;
  }
  // eslint-disable-next-line no-use-before-define
  const { Grant } = provider;
  const grant = grantId ? await Grant.find(grantId) : new Grant({ accountId: session.accountId, clientId: params.client_id });
  const d = prompt.details ?? {};
  if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
  if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  for (const detail of d.rar ?? []) grant.addRar(detail);
  state.consents += 1;
  await finishInteraction(ctx, { consent: { grantId: await grant.save() } }, true);
  return true;
}

// ---------------------------------------------------------------- middleware
// Runs in front of every provider route.
async function testMiddleware(ctx, next) {
  if (await controlEndpoints(ctx)) return;
  if (await interactionPages(ctx)) return;

  if (ctx.path === PATHS.authorization && (ctx.method === 'GET' || ctx.method === 'POST')) {
    state.authorizeRequests += 1;
    if (ctx.method === 'GET') {
      const query = querystring.parse(ctx.querystring);
      if (audienceToResource(query)) ctx.querystring = querystring.stringify(query);
    }
    await next();
    return;
  }

  if (ctx.method === 'POST' && ctx.path === PATHS.device_authorization) {
    state.deviceAuthorizations += 1;
    if (ctx.is('application/x-www-form-urlencoded')) {
      const raw = await bodyText(ctx);
      const params = querystring.parse(raw);
      ctx.req.body = audienceToResource(params) ? querystring.stringify(params) : raw;
    }
    await next();
    // Stock oidc-provider sends no `interval` (clients then default to 5 s, RFC 8628 3.2).
    if (ctx.status === 200 && ctx.body && typeof ctx.body === 'object' && ctx.body.device_code) {
      ctx.body.interval = DEVICE_INTERVAL;
    }
    return;
  }

  if (!(ctx.method === 'POST' && ctx.path === PATHS.token)) {
    await next();
    return;
  }

  // Read (and possibly rewrite) the form body ourselves; oidc-provider then falls back
  // to ctx.req.body (see the console.warn filter below).
  let params = {};
  const isForm = ctx.is('application/x-www-form-urlencoded');
  if (isForm) {
    const raw = await bodyText(ctx);
    params = querystring.parse(raw);
    ctx.req.body = raw;
  }

  const basic = parseBasic(ctx.get('authorization'));
  const clientId = basic?.id ?? first(params.client_id) ?? assertionIssuer(first(params.client_assertion)) ?? '_unknown';
  const grantType = first(params.grant_type) ?? '_unknown';
  state.total += 1;
  state.tokenRequests[clientId] = (state.tokenRequests[clientId] ?? 0) + 1;
  state.byGrant[grantType] = (state.byGrant[grantType] ?? 0) + 1;

  const retryAfter = overRateLimit(clientId);
  if (retryAfter !== undefined) {
    state.rateLimited += 1;
    ctx.set('Retry-After', String(retryAfter));
    sendJson(ctx, 429, { error: 'rate_limited', error_description: `over ${RATE_LIMIT} requests/s for ${clientId}` });
    return;
  }

  const fault = state.faults.shift();
  // `drop_response`: the IdP processes the request in full (a code or refresh token is used up, a
  // client assertion's jti is remembered), then the connection drops before the answer is sent.
  const dropResponse = Boolean(fault?.drop_response);
  if (fault && !dropResponse && await applyFault(ctx, fault)) return;
  const proceed = dropResponse ? async () => {
    await next();
    state.responsesDropped += 1;
    ctx.req.socket.destroy();
    ctx.respond = false;
  } : next;

  // Device flow pacing (RFC 8628 3.5): a poll of the same device_code sooner than the
  // interval after the previous poll gets slow_down. Faulted requests are not polls.
  const deviceCode = first(params.device_code);
  if (grantType === DEVICE_GRANT && DEVICE_INTERVAL > 0 && deviceCode) {
    const now = Date.now();
    const last = state.lastPoll.get(deviceCode);
    state.lastPoll.set(deviceCode, now);
    if (last !== undefined && now - last < DEVICE_INTERVAL * 1000 - POLL_SLACK_MS) {
      state.slowDown += 1;
      sendJson(ctx, 400, {
        error: 'slow_down',
        error_description: `polling too fast: interval is ${DEVICE_INTERVAL}s, last poll was ${now - last}ms ago`,
      });
      return;
    }
  }

  if (isForm) {
    const refused = await workload.federatedClientAuth(ctx, params);
    if (refused) {
      sendJson(ctx, ...refused);
      return;
    }
    if (audienceToResource(params)) ctx.req.body = querystring.stringify(params);

    // Stock oidc-provider treats client_secret_basic and client_secret_post as
    // interchangeable; enforce the registered one so tests can tell them apart.
    const usedPost = params.client_secret !== undefined;
    const usedBasic = basic !== undefined;
    const client = CLIENTS_BY_ID.get(clientId);
    if (client && usedPost !== usedBasic) {
      const used = usedBasic ? 'client_secret_basic' : 'client_secret_post';
      const registered = client.token_endpoint_auth_method;
      if (['client_secret_basic', 'client_secret_post'].includes(registered) && used !== registered) {
        sendJson(ctx, 400, {
          error: 'invalid_client',
          error_description: `client authentication method ${used} used, but client is registered for ${registered}`,
        });
        return;
      }
    }
  }

  const refreshToken = first(params.refresh_token);
  if (grantType === 'refresh_token' && refreshToken) {
    await withRefreshLock(refreshToken, async () => {
      // Every presentation of a refresh token that was already rotated away counts
      // (the provider itself flags only the first one: it then deletes the token and
      // revokes the grant, so later copies just get "refresh token not found").
      if (rotatedRefreshTokens.has(refreshToken)) state.refreshReuse += 1;
      await proceed();
      if (ctx.status === 200) rotatedRefreshTokens.add(refreshToken);
    });
    return;
  }
  await proceed();
}

// Our middleware consumes the request body, so oidc-provider warns once about an
// "already parsed request body". That is intended here; keep stderr clean.
const origWarn = console.warn;
console.warn = (...args) => {
  if (typeof args[0] === 'string' && args[0].includes('already parsed request body detected')) return;
  origWarn(...args);
};

// ---------------------------------------------------------------- provider
const server = TLS_CERT
  ? createHttpsServer({ cert: readFileSync(TLS_CERT), key: readFileSync(TLS_KEY) })
  : createHttpServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, HOST, resolve);
});
const { port } = server.address();
const issuer = `${TLS_CERT ? 'https' : 'http'}://${HOST}:${port}`;

function resourceServerInfo(resource) {
  let audience = resource;
  if (resource.startsWith(AUDIENCE_URN_PREFIX)) {
    audience = decodeURIComponent(resource.slice(AUDIENCE_URN_PREFIX.length));
  }
  return {
    scope: RESOURCE_SCOPE,
    audience,
    accessTokenTTL: TTL,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  };
}

const provider = new Provider(issuer, {
  routes: PATHS,
  clients: CLIENTS,
  jwks,
  // Every scope a client registers must be a supported one (static clients are validated
  // lazily, on first use: a mismatch surfaces as invalid_client_metadata at /token).
  scopes: [...OIDC_SCOPES, ...RESOURCE_SCOPE.split(' ')],
  claims: {
    acr: null,
    sid: null,
    auth_time: null,
    iss: null,
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email'],
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    deviceFlow: {
      enabled: true,
      userCodeInputSource,
      userCodeConfirmSource,
      successSource,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => oneOf ?? DEFAULT_RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => resourceServerInfo(resource),
    },
  },
  // Public clients must use PKCE (S256 is the only method oidc-provider 9 supports).
  pkce: { required: (ctx, client) => client.clientAuthMethod === 'none' || client.clientId === NATIVE_CLIENT_ID },
  // Refresh tokens for every client allowed the refresh_token grant, offline_access or not.
  // (Under IDP_PROFILE keycloak or okta, only with offline_access granted.)
  issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token')
    && (!profiles.refreshNeedsOfflineAccess(PROFILE) || Boolean(code?.scopes?.has('offline_access'))),
  // Always rotate: a rotated (consumed) refresh token presented again revokes the grant.
  rotateRefreshToken: true,
  expiresWithSession: async () => false,
  ttl: {
    AccessToken: () => TTL,
    ClientCredentials: () => TTL,
    RefreshToken: () => REFRESH_TTL,
  },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({
      sub, name: sub, email: `${sub}@flyte.test`, preferred_username: sub,
    }),
  }),
  renderError,
  clientBasedCORS: () => false,
  extraTokenClaims: async (ctx, token) => workload.extraTokenClaims(token),
  cookies: { keys: ['flyteauth-test-idp-cookie-key'] },
});
// We are the only front end; errors are reported as JSON bodies by the provider.
provider.proxy = false;
if (PROFILE) provider.use(profiles.profileMiddleware(PROFILE, { bodyText, setBody, sendJson }));
provider.use(testMiddleware);
workload.registerTokenExchange(provider, {
  resourceServerInfo, defaultResource: DEFAULT_RESOURCE, audiencePrefix: AUDIENCE_URN_PREFIX,
});
provider.on('server_error', (ctx, err) => { console.error('server_error', err); });
provider.on('grant.revoked', () => { state.grantsRevoked += 1; });

server.on('request', provider.callback());

process.stdout.write(`READY ${port}\n`);

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.error(`idp: ${signal}, shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (process.env.IDP_EXIT_ON_STDIN_EOF === '1') {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}
