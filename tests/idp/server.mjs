// Local OAuth2 identity provider for the flyteauth test suite (panva/oidc-provider v9).
//
//   node tests/idp/server.mjs
//
// Environment:
//   IDP_PORT                 port to bind on 127.0.0.1 (0 = any free port; default 0)
//   IDP_TOKEN_TTL            access-token lifetime in seconds (default 2)
//   IDP_EXIT_ON_STDIN_EOF    "1": exit when stdin closes (the Python launcher sets it,
//                            so the server dies with its parent even on SIGKILL)
//
// Once listening it prints exactly one line "READY <port>" on stdout. Everything else
// (including oidc-provider's own console.info notices) goes to stderr.
//
// Non-OIDC test control endpoints (see README.md): GET /_test/stats, POST /_test/reset,
// POST /_test/faults.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { text as readText } from 'node:stream/consumers';
import * as querystring from 'node:querystring';

// oidc-provider prints NOTICEs through console.info (stdout). stdout is reserved for the
// READY line, so route console.log/info to stderr before the library is loaded.
console.log = console.error;
console.info = console.error;

const { default: Provider } = await import('oidc-provider');

const HOST = '127.0.0.1';
const PORT = Number.parseInt(process.env.IDP_PORT ?? '0', 10);
const TTL = Number.parseInt(process.env.IDP_TOKEN_TTL ?? '2', 10);
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) {
  throw new Error(`invalid IDP_PORT ${process.env.IDP_PORT}`);
}
if (!Number.isInteger(TTL) || TTL < 1) {
  throw new Error(`invalid IDP_TOKEN_TTL ${process.env.IDP_TOKEN_TTL}`);
}

// Resource used when a token request names neither `resource` nor `audience`.
const DEFAULT_RESOURCE = 'http://flyte.test/api';
// `audience=<anything>` (Auth0 style) is carried to the provider as
// `resource=<AUDIENCE_URN_PREFIX><urlencoded value>` so that non-URI audiences work too;
// getResourceServerInfo turns it back into aud=<value>.
const AUDIENCE_URN_PREFIX = 'urn:flyteauth-test:audience:';
const RESOURCE_SCOPE = 'all offline read';

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
];
const CLIENTS_BY_ID = new Map(CLIENTS.map((c) => [c.client_id, c]));

const jwks = JSON.parse(readFileSync(new URL('./jwks.json', import.meta.url), 'utf8'));

// ---------------------------------------------------------------- test state
const state = {
  tokenRequests: {}, // client_id -> n
  byGrant: {}, // grant_type -> n
  total: 0,
  faults: [], // FIFO queue of fault objects
};

function resetState() {
  state.tokenRequests = {};
  state.byGrant = {};
  state.total = 0;
  state.faults = [];
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

const first = (v) => (Array.isArray(v) ? v[0] : v);

async function controlEndpoints(ctx) {
  if (ctx.method === 'GET' && ctx.path === '/_test/stats') {
    sendJson(ctx, 200, {
      token_requests: state.tokenRequests,
      by_grant: state.byGrant,
      total: state.total,
      pending_faults: state.faults.length,
    });
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
      parsed = JSON.parse((await readText(ctx.req)) || '{}');
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

// Runs in front of every provider route.
async function testMiddleware(ctx, next) {
  if (await controlEndpoints(ctx)) return;

  if (!(ctx.method === 'POST' && ctx.path === '/token')) {
    await next();
    return;
  }

  // Read (and possibly rewrite) the form body ourselves; oidc-provider then falls back
  // to ctx.req.body (see the console.warn filter below).
  let params = {};
  const isForm = ctx.is('application/x-www-form-urlencoded');
  if (isForm) {
    const raw = await readText(ctx.req);
    params = querystring.parse(raw);
    ctx.req.body = raw;
  }

  const basic = parseBasic(ctx.get('authorization'));
  const clientId = basic?.id ?? first(params.client_id) ?? '_unknown';
  const grantType = first(params.grant_type) ?? '_unknown';
  state.total += 1;
  state.tokenRequests[clientId] = (state.tokenRequests[clientId] ?? 0) + 1;
  state.byGrant[grantType] = (state.byGrant[grantType] ?? 0) + 1;

  const fault = state.faults.shift();
  if (fault && await applyFault(ctx, fault)) return;

  if (isForm) {
    // Auth0-style `audience` -> RFC 8707 `resource`.
    if (params.audience !== undefined) {
      const audience = first(params.audience);
      delete params.audience;
      if (params.resource === undefined && audience) {
        params.resource = AUDIENCE_URN_PREFIX + encodeURIComponent(audience);
      }
      ctx.req.body = querystring.stringify(params);
    }

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

  await next();
}

// Our middleware consumes the request body, so oidc-provider warns once about an
// "already parsed request body". That is intended here; keep stderr clean.
const origWarn = console.warn;
console.warn = (...args) => {
  if (typeof args[0] === 'string' && args[0].includes('already parsed request body detected')) return;
  origWarn(...args);
};

// ---------------------------------------------------------------- provider
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, HOST, resolve);
});
const { port } = server.address();
const issuer = `http://${HOST}:${port}`;

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
  clients: CLIENTS,
  jwks,
  // Every scope a client registers must be a supported one (static clients are validated
  // lazily, on first use: a mismatch surfaces as invalid_client_metadata at /token).
  scopes: ['openid', 'offline_access', ...RESOURCE_SCOPE.split(' ')],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => oneOf ?? DEFAULT_RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => resourceServerInfo(resource),
    },
  },
  ttl: {
    AccessToken: () => TTL,
    ClientCredentials: () => TTL,
  },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  clientBasedCORS: () => false,
  cookies: { keys: ['flyteauth-test-idp-cookie-key'] },
});
// We are the only front end; errors are reported as JSON bodies by the provider.
provider.proxy = false;
provider.use(testMiddleware);
provider.on('server_error', (ctx, err) => { console.error('server_error', err); });

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
