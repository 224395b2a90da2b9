// Workload identity for the test IdP: an RFC 8693 token-exchange grant and a federated client
// (RFC 7523 client assertion from another issuer), both trusting tokens of *independent* issuers
// ("cluster issuers": a Kubernetes-style service account issuer, GitHub Actions' token service)
// that the tests run on loopback. Keys are fetched from each issuer's JWKS (via its OIDC
// discovery document), never shared with this process.
//
// Environment:
//   IDP_SUBJECT_ISSUERS     comma-separated issuer URLs whose tokens token exchange accepts
//   IDP_FEDERATED_ISSUER    issuer of the federated client's credential (registers flyte-federated)
//   IDP_FEDERATED_SUBJECT   its subject (default system:serviceaccount:flyte:workload)
//
// Imported by server.mjs after console is rerouted (it loads oidc-provider).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as querystring from 'node:querystring';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { errors } from 'oidc-provider';

const { InvalidRequest, InvalidTarget } = errors;

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const TT = 'urn:ietf:params:oauth:token-type:';
const ACCEPTED_SUBJECT_TYPES = new Set([`${TT}jwt`, `${TT}id_token`]);
const ISSUABLE_TYPES = new Set([`${TT}access_token`, `${TT}jwt`]);
// Entra ID's fixed audience for federated credentials; the federated client expects it.
export const FEDERATED_AUDIENCE = 'api://AzureADTokenExchange';
export const FEDERATED_CLIENT_ID = 'flyte-federated';

const SUBJECT_ISSUERS = (process.env.IDP_SUBJECT_ISSUERS || '').split(',').map((s) => s.trim()).filter(Boolean);
const FEDERATED_ISSUER = process.env.IDP_FEDERATED_ISSUER || '';
const FEDERATED_SUBJECT = process.env.IDP_FEDERATED_SUBJECT || 'system:serviceaccount:flyte:workload';
// oidc-provider has no federated credentials: once our middleware has verified the assertion, the
// request continues as client_secret_post with this secret, which never leaves the process.
const FEDERATED_INTERNAL_SECRET = randomBytes(24).toString('base64url');

export function workloadClients() {
  const clients = [
    {
      client_id: 'flyte-exchange', // public: token exchange needs no client secret
      token_endpoint_auth_method: 'none',
      grant_types: [TOKEN_EXCHANGE_GRANT],
      response_types: [],
      redirect_uris: [],
      scope: 'all offline read',
    },
    {
      client_id: 'flyte-exchange-secret',
      client_secret: 'flyte-exchange-secret-value',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [TOKEN_EXCHANGE_GRANT],
      response_types: [],
      redirect_uris: [],
      scope: 'all offline read',
    },
    {
      client_id: 'flyte-exchange-pkjwt', // private_key_jwt with ci-pkjwt's key pair
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'RS256',
      jwks: JSON.parse(readFileSync(new URL('./ci_pkjwt_jwks.json', import.meta.url), 'utf8')),
      grant_types: [TOKEN_EXCHANGE_GRANT],
      response_types: [],
      redirect_uris: [],
      scope: 'all offline read',
    },
  ];
  if (FEDERATED_ISSUER) {
    clients.push({
      client_id: FEDERATED_CLIENT_ID,
      client_secret: FEDERATED_INTERNAL_SECRET,
      token_endpoint_auth_method: 'client_secret_post',
      jwks_uri: `${FEDERATED_ISSUER}/openid/v1/jwks`,
      grant_types: ['client_credentials', TOKEN_EXCHANGE_GRANT],
      response_types: [],
      redirect_uris: [],
      scope: 'all offline read',
    });
  }
  return clients;
}

// ------------------------------------------------------------------ verifying foreign tokens
const keySets = new Map(); // jwks_uri -> remote JWKS

function remoteKeys(jwksUri) {
  if (!keySets.has(jwksUri)) keySets.set(jwksUri, createRemoteJWKSet(new URL(jwksUri)));
  return keySets.get(jwksUri);
}

async function discoveredJwksUri(issuer) {
  const response = await fetch(`${issuer}/.well-known/openid-configuration`);
  if (!response.ok) throw new InvalidRequest(`issuer ${issuer} has no OIDC discovery document (HTTP ${response.status})`);
  const { jwks_uri: jwksUri } = await response.json();
  return jwksUri;
}

// Verifies a JWT of another issuer: signature (its JWKS), issuer, audience, subject, expiry.
// Every failure is an error whose description says what was wrong (RFC 8693 2.2.2: invalid_request).
async function verifyForeign(token, { what, issuers, audience, subject, jwksUri, Err = InvalidRequest }) {
  let claims;
  try {
    claims = decodeJwt(token);
  } catch {
    throw new Err(`${what} is not a JWT`);
  }
  if (!issuers.includes(claims.iss)) {
    throw new Err(`${what} issuer ${JSON.stringify(claims.iss)} is not trusted (trusted: ${issuers.join(', ') || 'none'})`);
  }
  const keys = remoteKeys(jwksUri ?? await discoveredJwksUri(claims.iss));
  try {
    const { payload } = await jwtVerify(token, keys, { issuer: claims.iss, audience, subject });
    return payload;
  } catch (err) {
    if (err.code === 'ERR_JWT_EXPIRED') throw new Err(`${what} expired (exp ${claims.exp})`);
    if (err.code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') {
      const expected = { aud: audience, sub: subject }[err.claim];
      throw new Err(`${what} ${err.claim} ${JSON.stringify(claims[err.claim])} is not accepted${expected ? ` (expected ${JSON.stringify(expected)})` : ''}`);
    }
    throw new Err(`${what} could not be verified against ${claims.iss} (${err.code ?? err.message})`);
  }
}

// ------------------------------------------------------------------ token exchange grant
const exchangeClaims = new WeakMap(); // AccessToken -> extra claims (act)

// For the provider's extraTokenClaims: the `act` claim of exchanged tokens.
export function extraTokenClaims(token) {
  return exchangeClaims.get(token);
}

// `resourceServerInfo(resource)`, `defaultResource` and `audiencePrefix` come from server.mjs.
export function registerTokenExchange(provider, { resourceServerInfo, defaultResource, audiencePrefix }) {
  const targetOf = (resource) => (resource.startsWith(audiencePrefix)
    ? decodeURIComponent(resource.slice(audiencePrefix.length)) : resource);
  // Exchanged tokens are for the Flyte API only: anything else is invalid_target.
  const allowedTarget = (target) => target === defaultResource || target.startsWith('http://flyte.test/');

  async function handler(ctx) {
    const { params, client } = ctx.oidc;
    for (const name of ['subject_token', 'subject_token_type']) {
      if (!params[name]) throw new InvalidRequest(`missing required parameter '${name}'`);
    }
    if (!ACCEPTED_SUBJECT_TYPES.has(params.subject_token_type)) {
      throw new InvalidRequest(`unsupported subject_token_type ${params.subject_token_type} (accepted: ${[...ACCEPTED_SUBJECT_TYPES].join(', ')})`);
    }
    if (params.requested_token_type && !ISSUABLE_TYPES.has(params.requested_token_type)) {
      throw new InvalidRequest(`requested_token_type ${params.requested_token_type} can not be issued (issuable: ${[...ISSUABLE_TYPES].join(', ')})`);
    }
    const audience = provider.issuer;
    const subject = await verifyForeign(params.subject_token, { what: 'subject_token', issuers: SUBJECT_ISSUERS, audience });
    let act = { sub: client.clientId };
    if (params.actor_token) {
      if (!params.actor_token_type) throw new InvalidRequest("actor_token_type is required with 'actor_token'");
      const actor = await verifyForeign(params.actor_token, { what: 'actor_token', issuers: SUBJECT_ISSUERS, audience });
      act = { sub: actor.sub, iss: actor.iss };
    }
    const resource = params.resource ?? defaultResource;
    if (!allowedTarget(targetOf(resource))) {
      throw new InvalidTarget(`token exchange can not issue tokens for ${JSON.stringify(targetOf(resource))} (allowed: ${defaultResource}, http://flyte.test/*)`);
    }
    const info = resourceServerInfo(resource);
    const granted = new Set(info.scope.split(' '));
    const scope = (params.scope ?? '').split(' ').filter((s) => granted.has(s)).join(' ') || undefined;
    const token = new provider.AccessToken({
      accountId: subject.sub,
      client,
      gty: 'token_exchange',
      scope,
      resourceServer: new provider.ResourceServer(resource, info),
    });
    exchangeClaims.set(token, { act });
    const value = await token.save();
    ctx.body = {
      access_token: value,
      issued_token_type: `${TT}access_token`,
      token_type: 'Bearer',
      expires_in: token.expiration,
      ...(scope ? { scope } : {}),
    };
  }

  provider.registerGrantType(TOKEN_EXCHANGE_GRANT, handler, [
    'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type',
    'requested_token_type', 'resource', 'audience', 'scope',
  ], ['resource', 'audience']);
}

// ------------------------------------------------------------------ federated client authentication
// Called by the /token middleware with the parsed form. Returns a response [status, body] when the
// federated assertion is refused; on success rewrites the form to the internal credential.
export async function federatedClientAuth(ctx, params) {
  if (!FEDERATED_ISSUER || params.client_id !== FEDERATED_CLIENT_ID || params.client_assertion === undefined) {
    return undefined;
  }
  if (params.client_assertion_type !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
    return [400, { error: 'invalid_request', error_description: 'client_assertion_type must be jwt-bearer' }];
  }
  try {
    await verifyForeign(String(params.client_assertion), {
      what: 'client_assertion',
      issuers: [FEDERATED_ISSUER],
      audience: FEDERATED_AUDIENCE,
      subject: FEDERATED_SUBJECT,
      jwksUri: `${FEDERATED_ISSUER}/openid/v1/jwks`,
    });
  } catch (err) {
    return [401, { error: 'invalid_client', error_description: `federated credential: ${err.error_description ?? err.message}` }];
  }
  delete params.client_assertion;
  delete params.client_assertion_type;
  params.client_secret = FEDERATED_INTERNAL_SECRET;
  ctx.req.body = querystring.stringify(params);
  return undefined;
}
