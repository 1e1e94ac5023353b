// node-oidc-provider, configured like idp_project for the benchmark (benchmarks/run.py starts it;
// docs/performance.md says what differs). In-memory adapter (its default), one confidential client
// with client_secret_basic, PKCE S256 required, `openid offline_access`, RS256 ID tokens and, through
// the resource indicators feature, RS256 JWT access tokens (RFC 9068). Sign-in and consent are a tiny
// interaction that logs the benchmark user in and grants what was asked: minting is untimed.
//
//   NODE_OP_PORT=8123 NODE_OP_CLIENT_ID=... NODE_OP_CLIENT_SECRET=... NODE_OP_REDIRECT_URI=... \
//     node benchmarks/node_op/provider.mjs
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};

const host = '127.0.0.1';
const port = Number(env('NODE_OP_PORT'));
const issuer = `http://${host}:${port}`;
const resource = `${issuer}/api`; // the one resource server, whose access tokens are JWTs
const accountId = env('NODE_OP_ACCOUNT', 'bench');
const jwtAccessTokens = env('NODE_OP_JWT_ACCESS_TOKENS', '1') === '1';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: 'bench-rs256' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: env('NODE_OP_CLIENT_ID'),
      client_secret: env('NODE_OP_CLIENT_SECRET'),
      redirect_uris: [env('NODE_OP_REDIRECT_URI')],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  pkce: { required: () => true }, // S256 is its only method by default
  scopes: ['openid', 'offline_access'],
  claims: { openid: ['sub'] },
  ttl: { AuthorizationCode: 600 }, // codes wait for the timed phase, as in ours (600 s)
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: jwtAccessTokens,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'openid offline_access',
        audience: resource,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 3600,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
});

// Log the benchmark user in and consent to everything asked, without a page.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name === 'login') {
    return provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
  }
  const { params, session, prompt } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((error) => {
      res.statusCode = 500;
      res.end(String(error));
    });
    return;
  }
  callback(req, res);
});
server.listen(port, host, () => console.log(`node-oidc-provider listening on ${issuer}`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
