// One-off helper: regenerates jwks.json (the IdP's fixed RS256 signing key).
// The committed jwks.json is test-only key material; never use it anywhere real.
//   node tests/idp/gen-jwks.mjs > tests/idp/jwks.json
import { generateKeyPairSync, createHash } from 'node:crypto';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = privateKey.export({ format: 'jwk' });
// RFC 7638 thumbprint as kid, so the kid is stable and derived from the key.
const thumb = createHash('sha256')
  .update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }))
  .digest('base64url');
const key = { kid: thumb, use: 'sig', alg: 'RS256', ...jwk };
process.stdout.write(`${JSON.stringify({ keys: [key] }, null, 2)}\n`);
