// One-off helper: regenerates the `ci-pkjwt` client's key pair (private_key_jwt tests).
// Writes ci_pkjwt_key.pem (PKCS8 private key, used by the Python tests to sign client
// assertions) and ci_pkjwt_jwks.json (its public JWKS, registered on the client in server.mjs).
// Test-only key material; never use it anywhere real.
//   node tests/idp/gen-ci-pkjwt-key.mjs
import { generateKeyPairSync, createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = publicKey.export({ format: 'jwk' });
const kid = createHash('sha256')
  .update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }))
  .digest('base64url');
writeFileSync(new URL('./ci_pkjwt_key.pem', import.meta.url), privateKey.export({ type: 'pkcs8', format: 'pem' }));
writeFileSync(
  new URL('./ci_pkjwt_jwks.json', import.meta.url),
  `${JSON.stringify({ keys: [{ kid, use: 'sig', alg: 'RS256', ...jwk }] }, null, 2)}\n`,
);
