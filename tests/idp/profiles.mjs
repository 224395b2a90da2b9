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

const ROUTES = {
  entra: {
    issuerPath: `/${TENANT}/v2.0`,
    paths: [
      [`/${TENANT}/v2.0/.well-known/openid-configuration`, '/.well-known/openid-configuration'],
      [`/${TENANT}/oauth2/v2.0/token`, '/token'],
      [`/${TENANT}/oauth2/token`, '/token'],
      [`/${TENANT}/oauth2/v2.0/devicecode`, '/device/auth'],
      [`/${TENANT}/oauth2/v2.0/authorize`, '/auth'],
    ],
  },
  keycloak: {
    issuerPath: '/realms/flyte',
    paths: [
      ['/realms/flyte/.well-known/openid-configuration', '/.well-known/openid-configuration'],
      ['/realms/flyte/protocol/openid-connect/token', '/token'],
      ['/realms/flyte/protocol/openid-connect/auth/device', '/device/auth'],
      ['/realms/flyte/protocol/openid-connect/auth', '/auth'],
      ['/realms/flyte/protocol/openid-connect/revoke', '/token/revocation'],
    ],
  },
  okta: {
    issuerPath: '/oauth2/default',
    paths: [
      ['/oauth2/default/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'],
      ['/oauth2/default/.well-known/openid-configuration', '/.well-known/openid-configuration'],
      ['/oauth2/default/v1/token', '/token'],
      ['/oauth2/default/v1/device/authorize', '/device/auth'],
      ['/oauth2/default/v1/authorize', '/auth'],
      ['/oauth2/default/v1/revoke', '/token/revocation'],
    ],
  },
  auth0: {
    issuerPath: '',
    paths: [
      ['/oauth/token', '/token'],
      ['/oauth/device/code', '/device/auth'],
      ['/authorize', '/auth'],
      ['/oauth/revoke', '/token/revocation'],
    ],
  },
};

export const PROFILES = Object.keys(ROUTES);

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
  const routes = ROUTES[profile];
  if (!routes) throw new Error(`unknown IDP_PROFILE ${profile} (one of ${PROFILES.join(', ')})`);
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
    if ((profile === 'keycloak' || profile === 'okta') && body.refresh_token
        && !String(body.scope ?? first(params.scope) ?? '').split(' ').includes('offline_access')) {
      delete body.refresh_token;
      changed = true;
    }
    if (profile === 'auth0' && !params.__audience && body.access_token) {
      body.access_token = randomBytes(24).toString('base64url'); // opaque: no API named
      changed = true;
    }
    if (changed) sendJson(ctx, 200, body);
  }

  return async function idpProfile(ctx, next) {
    const route = routes.paths.find(([pub]) => ctx.path === pub);
    if (!route) {
      await next();
      return;
    }
    const [publicPath, internal] = route;
    ctx.path = internal;

    if (internal === '/.well-known/openid-configuration') {
      await next();
      if (ctx.status !== 200) return;
      const doc = typeof ctx.body === 'string' ? JSON.parse(ctx.body) : { ...ctx.body };
      const root = doc.issuer;
      for (const [pub, inner] of [...routes.paths].reverse()) {
        for (const key of Object.keys(doc)) {
          if (doc[key] === root + inner) doc[key] = root + pub;
        }
      }
      if (profile === 'entra') doc.token_endpoint = `${root}/${TENANT}/oauth2/v2.0/token`;
      doc.issuer = root + routes.issuerPath;
      sendJson(ctx, 200, doc);
      return;
    }
    if (ctx.method !== 'POST' || !ctx.is('application/x-www-form-urlencoded')) {
      await next();
      return;
    }
    const params = querystring.parse(await bodyText(ctx));
    const hadAudience = Boolean(first(params.audience));

    if (internal === '/device/auth') {
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

    if (internal === '/token') {
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
