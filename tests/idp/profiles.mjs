// IdP profiles: the test IdP dressed as the identity providers Flyte users run, each reproducing the
// documented behaviour our client must handle (docs/idps.md). Selected by IDP_PROFILE:
//
//   entra     Entra ID: /<tenant>/oauth2/v2.0/{token,authorize,devicecode} and the v1 /<tenant>/oauth2/token;
//             v2 refuses `audience`/`resource` (AADSTS901002), client credentials need exactly one
//             `<app id uri>/.default` scope (AADSTS1002012), v1 takes `resource`; a client assertion must
//             carry the certificate thumbprint `x5t#S256` (or `x5t`) (AADSTS700027); a wrong secret is
//             AADSTS7000215.
//   keycloak  Keycloak: /realms/flyte/protocol/openid-connect/...; the device authorization of a client
//             with PKCE enforced needs code_challenge (S256) and every poll the code_verifier; refresh
//             tokens only for logins that asked for offline_access.
//   okta      Okta custom authorization server /oauth2/default/v1/...; metadata at
//             /oauth2/default/.well-known/oauth-authorization-server; refresh tokens only with offline_access.
//   auth0     Auth0: /oauth/token, /authorize, /oauth/device/code; an access token is opaque unless the
//             request named an API (`audience`).
//
// The profile rewrites the public paths to the provider's own and the discovery document back; the
// provider underneath is the same oidc-provider with the same clients.
import { createHash, randomBytes } from 'node:crypto';
import * as querystring from 'node:querystring';

export const TENANT = 'flyte-tenant';

// Where each IdP keeps its endpoints (oidc-provider's `routes`), the other public paths that lead to one of
// them (`aliases`: Entra's v1 token endpoint, the discovery documents under the issuer's path), and the path
// its issuer identifier carries.
const DEFAULT_ROUTES = { authorization: '/auth', device_authorization: '/device/auth', token: '/token',
  revocation: '/token/revocation' };
const PROFILE_ROUTES = {
  entra: {
    issuerPath: `/${TENANT}/v2.0`,
    routes: { authorization: `/${TENANT}/oauth2/v2.0/authorize`, device_authorization: `/${TENANT}/oauth2/v2.0/devicecode`,
      token: `/${TENANT}/oauth2/v2.0/token` },
    aliases: [[`/${TENANT}/oauth2/token`, 'token'],
      [`/${TENANT}/v2.0/.well-known/openid-configuration`, 'discovery']],
  },
  keycloak: {
    issuerPath: '/realms/flyte',
    routes: { authorization: '/realms/flyte/protocol/openid-connect/auth',
      device_authorization: '/realms/flyte/protocol/openid-connect/auth/device',
      token: '/realms/flyte/protocol/openid-connect/token', revocation: '/realms/flyte/protocol/openid-connect/revoke' },
    aliases: [['/realms/flyte/.well-known/openid-configuration', 'discovery']],
  },
  okta: {
    issuerPath: '/oauth2/default',
    routes: { authorization: '/oauth2/default/v1/authorize', device_authorization: '/oauth2/default/v1/device/authorize',
      token: '/oauth2/default/v1/token', revocation: '/oauth2/default/v1/revoke' },
    aliases: [['/oauth2/default/.well-known/oauth-authorization-server', 'discovery'],
      ['/oauth2/default/.well-known/openid-configuration', 'discovery']],
  },
  auth0: {
    issuerPath: '',
    routes: { authorization: '/authorize', device_authorization: '/oauth/device/code', token: '/oauth/token',
      revocation: '/oauth/revoke' },
    aliases: [],
  },
};

// oidc-provider's `routes` for a profile ('' = its defaults).
export function routes(profile) {
  if (!profile) return { ...DEFAULT_ROUTES };
  const found = PROFILE_ROUTES[profile];
  if (!found) throw new Error(`unknown IDP_PROFILE ${profile} (one of ${Object.keys(PROFILE_ROUTES).join(', ')})`);
  return { ...DEFAULT_ROUTES, ...found.routes };
}

export const PROFILES = Object.keys(PROFILE_ROUTES);

// Keycloak and Okta issue refresh tokens only to grants that include offline_access (oidc-provider's
// issueRefreshToken decides it from the code's scopes).
export function refreshNeedsOfflineAccess(profile) {
  return profile === 'keycloak' || profile === 'okta';
}

const first = (v) => (Array.isArray(v) ? v[0] : v);

function header(jwt) {
  try {
    return JSON.parse(Buffer.from(String(jwt).split('.')[0], 'base64url').toString('utf8'));
  } catch {
    return {};
  }
}

// tools: { bodyText(ctx), setBody(ctx, raw), sendJson(ctx, status, body) }
export function profileMiddleware(profile, tools) {
  const paths = routes(profile);
  const { issuerPath, aliases } = PROFILE_ROUTES[profile];
  const { bodyText, setBody, sendJson } = tools;
  const deviceChallenges = new Map(); // device_code -> S256 code_challenge (keycloak)
  const wantX5t = process.env.IDP_PROFILE_X5T_S256 || '';

  const fail = (ctx, status, error, description) => sendJson(ctx, status, { error, error_description: description });

  // Entra: the API is named by a `<app id uri>/.default` scope (v2) or `resource` (v1); underneath it is
  // the provider's `audience` (turned into a resource indicator by the test middleware).
  function entraToken(ctx, params, v1) {
    const grant = first(params.grant_type);
    if (!v1 && (params.audience !== undefined || params.resource !== undefined)) {
      fail(ctx, 400, 'invalid_request', "AADSTS901002: The 'resource' request parameter is not supported.");
      return false;
    }
    if (v1 && params.audience !== undefined) {
      fail(ctx, 400, 'invalid_request', "AADSTS90014: The request body must contain the 'resource' parameter, not 'audience'.");
      return false;
    }
    const scopes = String(first(params.scope) ?? '').split(' ').filter(Boolean);
    const defaults = scopes.filter((s) => s.endsWith('/.default'));
    if (!v1 && grant === 'client_credentials' && (defaults.length !== 1 || scopes.length !== 1)) {
      fail(ctx, 400, 'invalid_scope', `AADSTS1002012: The provided value for scope ${scopes.join(' ') || '(none)'} is not valid. `
        + 'Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).');
      return false;
    }
    if (v1 && grant === 'client_credentials' && !first(params.resource)) {
      fail(ctx, 400, 'invalid_request', "AADSTS50001: The 'resource' parameter is required by the v1 endpoint.");
      return false;
    }
    const assertion = first(params.client_assertion);
    if (assertion) {
      const h = header(assertion);
      const thumb = h['x5t#S256'] ?? h.x5t;
      if (!thumb || (wantX5t && h['x5t#S256'] !== wantX5t)) {
        fail(ctx, 401, 'invalid_client', 'AADSTS700027: The certificate with identifier used to sign the client assertion '
          + 'is not registered on application. [Reason - The key was not found.]');
        return false;
      }
    }
    const api = v1 ? first(params.resource) : (defaults[0] ?? '').slice(0, -'/.default'.length);
    const rest = scopes.filter((s) => !s.endsWith('/.default'));
    delete params.resource;
    if (api) params.audience = api;
    params.scope = [...new Set([...rest, ...(grant === 'client_credentials' ? ['all'] : [])])].join(' ');
    if (!params.scope) delete params.scope;
    return true;
  }

  function secretErrors(ctx) {
    // Entra's words for a wrong secret.
    if (profile !== 'entra' || ctx.status !== 401) return;
    try {
      const body = typeof ctx.body === 'string' ? JSON.parse(ctx.body) : ctx.body;
      if (body?.error === 'invalid_client' && !String(body.error_description ?? '').startsWith('AADSTS')) {
        sendJson(ctx, 401, { error: 'invalid_client', error_description: 'AADSTS7000215: Invalid client secret provided. '
          + "Ensure the secret being sent in the request is the client secret value, not the client secret ID." });
      }
    } catch { /* not JSON: leave it */ }
  }

  function tokenResponse(ctx, params) {
    if (ctx.status !== 200) return;
    const body = typeof ctx.body === 'string' ? JSON.parse(ctx.body) : ctx.body;
    if (!body || typeof body !== 'object') return;
    let changed = false;
    if (profile === 'auth0' && !params.__audience && body.access_token) {
      body.access_token = randomBytes(24).toString('base64url'); // opaque: no API named
      changed = true;
    }
    if (changed) sendJson(ctx, 200, body);
  }

  return async function idpProfile(ctx, next) {
    const alias = aliases.find(([pub]) => ctx.path === pub);
    const publicPath = ctx.path;
    if (alias) ctx.path = alias[1] === 'discovery' ? '/.well-known/openid-configuration' : paths[alias[1]];
    const internal = Object.keys(paths).find((name) => paths[name] === ctx.path)
      ?? (ctx.path === '/.well-known/openid-configuration' ? 'discovery' : undefined);
    if (!internal) {
      await next();
      return;
    }

    if (internal === 'discovery') {
      await next();
      if (ctx.status !== 200) return;
      const doc = typeof ctx.body === 'string' ? JSON.parse(ctx.body) : { ...ctx.body };
      doc.issuer += issuerPath;
      sendJson(ctx, 200, doc);
      return;
    }
    if (ctx.method !== 'POST' || !ctx.is('application/x-www-form-urlencoded')) {
      await next();
      return;
    }
    const params = querystring.parse(await bodyText(ctx));
    const hadAudience = Boolean(first(params.audience));

    if (internal === 'device_authorization') {
      if (profile === 'entra' && params.audience !== undefined) {
        fail(ctx, 400, 'invalid_request', "AADSTS901002: The 'resource' request parameter is not supported.");
        return;
      }
      let challenge;
      if (profile === 'keycloak') {
        challenge = first(params.code_challenge);
        if (!challenge || first(params.code_challenge_method) !== 'S256') {
          fail(ctx, 400, 'invalid_request', 'PKCE enforced Client without code challenge method.');
          return;
        }
        delete params.code_challenge;
        delete params.code_challenge_method;
      }
      if (profile === 'entra' && !entraToken(ctx, params, false)) return;
      setBody(ctx, querystring.stringify(params));
      await next();
      const body = typeof ctx.body === 'string' ? JSON.parse(ctx.body || '{}') : ctx.body;
      if (challenge && ctx.status === 200 && body?.device_code) deviceChallenges.set(body.device_code, challenge);
      return;
    }

    if (internal === 'token') {
      if (profile === 'entra' && !entraToken(ctx, params, publicPath === `/${TENANT}/oauth2/token`)) return;
      const deviceCode = first(params.device_code);
      if (profile === 'keycloak' && deviceCode && deviceChallenges.has(deviceCode)) {
        const verifier = first(params.code_verifier);
        const expected = deviceChallenges.get(deviceCode);
        if (!verifier || createHash('sha256').update(verifier).digest('base64url') !== expected) {
          fail(ctx, 400, 'invalid_grant', 'PKCE verification failed: Code verifier not specified or does not match');
          return;
        }
      }
      const shaped = { ...params };
      if (deviceCode) delete shaped.code_verifier; // the provider's device grant knows no PKCE
      setBody(ctx, querystring.stringify(shaped));
      await next();
      secretErrors(ctx);
      tokenResponse(ctx, { ...params, __audience: hadAudience || Boolean(params.audience) });
      return;
    }
    setBody(ctx, querystring.stringify(params));
    await next();
  };
}
