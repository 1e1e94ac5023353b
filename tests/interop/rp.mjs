// A relying party built on openid-client (v6), run by tests/interop/test_openid_client.py against
// the example IdP on pytest-django's live server.
//
// Input: the JSON object in the RP_CONFIG environment variable:
//   { issuer, client_id, client_secret?, auth_method: "client_secret_basic" | "client_secret_post"
//     | "none", redirect_uri, username, password, scope?, acr_values? }
// Output: one JSON object on stdout with what each step returned; on a failure the object has an
// "error" member naming the step, and the exit status is 1.
//
// The user's browser is played by fetch with a cookie jar: it follows the IdP's redirects, submits
// the hosted login and consent forms as a browser does (ticked, enabled checkboxes only) and stops
// at the redirect to redirect_uri, whose URL is handed to openid-client as the "current URL" of the
// callback. Nothing needs to listen on redirect_uri.
import * as client from "openid-client";

const cfg = JSON.parse(process.env.RP_CONFIG ?? "{}");
const result = {};
let step = "start";

class Browser {
  constructor() {
    this.cookies = new Map();
  }

  async request(url, init = {}) {
    const headers = new Headers(init.headers ?? {});
    if (this.cookies.size) {
      headers.set("cookie", [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; "));
    }
    const response = await fetch(url, { ...init, headers, redirect: "manual" });
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(";");
      const [name, ...value] = pair.split("=");
      const expired = attributes.some((a) => /^\s*max-age=0\s*$/i.test(a));
      if (expired) this.cookies.delete(name.trim());
      else this.cookies.set(name.trim(), value.join("=").trim());
    }
    const text = await response.text();
    return { url, status: response.status, location: response.headers.get("location"), text };
  }

  get(url) {
    return this.request(url);
  }

  // `fields`: [name, value] pairs, so a name can repeat (the consent page's scope checkboxes).
  post(url, fields) {
    return this.request(url, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields),
    });
  }
}

function attribute(tag, name) {
  const value = new RegExp(`\\s${name}="([^"]*)"`, "i").exec(tag)?.[1];
  return value === undefined ? undefined : unescape(value);
}

function flag(tag, name) {
  return new RegExp(`\\s${name}(?=[\\s>/=])`, "i").test(tag);
}

// The first <form> with a control named `marker`, as a browser submits it (HTML "constructing the
// entry list"): `fields` are the [name, value] pairs of its enabled controls, checkboxes and radio
// buttons only when checked, never a disabled control; `buttons` its submit buttons; `controls` the
// names of all its controls, submitted or not; `checkboxes` every checkbox value by name.
function formWith(html, marker) {
  for (const [, attributes, body] of html.matchAll(/<form([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const action = attribute(attributes, "action") ?? "";
    const form = { action, fields: [], buttons: [], controls: new Set(), checkboxes: {} };
    for (const [tag, element] of body.matchAll(/<(input|button)\b[^>]*>/gi)) {
      const name = attribute(tag, "name");
      if (!name) continue;
      form.controls.add(name);
      const isButton = element.toLowerCase() === "button";
      const type = (attribute(tag, "type") ?? (isButton ? "submit" : "text")).toLowerCase();
      const disabled = flag(tag, "disabled");
      if (isButton || ["submit", "image", "button", "reset"].includes(type)) {
        if (type === "submit" && !disabled) form.buttons.push([name, attribute(tag, "value") ?? ""]);
      } else if (type === "checkbox" || type === "radio") {
        const value = attribute(tag, "value") ?? "on";
        (form.checkboxes[name] ??= []).push(value);
        if (flag(tag, "checked") && !disabled) form.fields.push([name, value]);
      } else if (!disabled) {
        form.fields.push([name, attribute(tag, "value") ?? ""]);
      }
    }
    if (form.controls.has(marker)) return form;
  }
  return null;
}

// What the browser posts: the form's fields with `typed` values replacing (or adding) text fields,
// plus the pressed button's name and value when it has a name (it must be one of the form's).
function submission(form, typed, button = null) {
  if (button && !form.buttons.some(([name, value]) => name === button[0] && value === button[1])) {
    throw new Error(`no ${button.join("=")} button in the form (it has ${JSON.stringify(form.buttons)})`);
  }
  const fields = form.fields.map(([name, value]) => [name, name in typed ? typed[name] : value]);
  for (const [name, value] of Object.entries(typed)) {
    if (!fields.some(([field]) => field === name)) fields.push([name, value]);
  }
  return button ? [...fields, button] : fields;
}

function unescape(value) {
  return value
    .replaceAll("&amp;", "&")
    .replaceAll("&quot;", '"')
    .replaceAll("&#x27;", "'")
    .replaceAll("&#39;", "'")
    .replaceAll("&lt;", "<")
    .replaceAll("&gt;", ">");
}

// Follow the IdP until it redirects to the relying party; sign in and allow on the way.
async function signInAndConsent(browser, authorizationUrl) {
  const pages = [];
  let response = await browser.get(authorizationUrl.href);
  for (let hops = 0; hops < 12; hops++) {
    if (response.status >= 300 && response.status < 400) {
      const next = new URL(response.location, response.url);
      if (next.origin !== new URL(cfg.issuer).origin) return { location: next.href, pages };
      response = await browser.get(next.href);
      continue;
    }
    const login = formWith(response.text, "password");
    const consent = formWith(response.text, "request_id");
    if (login) {
      pages.push({ page: "login", status: response.status, html: response.text.slice(0, 20000) });
      if (pages.filter((p) => p.page === "login").length > 1) throw new Error("the password was refused");
      const action = new URL(login.action || response.url, response.url);
      const typed = { username: cfg.username, password: cfg.password };
      response = await browser.post(action, submission(login, typed));
    } else if (consent) {
      // The scope checkboxes as shown (openid ticked and disabled: the browser does not send it) and
      // what pressing Allow sends.
      const posted = submission(consent, {}, ["decision", "allow"]);
      pages.push({
        page: "consent",
        status: response.status,
        scopes: consent.checkboxes.scope ?? [],
        posted_scopes: posted.filter(([name]) => name === "scope").map(([, value]) => value),
      });
      const action = new URL(consent.action || response.url, response.url);
      response = await browser.post(action, posted);
    } else {
      const text = response.text.slice(0, 500);
      throw new Error(`unexpected IdP page (HTTP ${response.status}) at ${response.url}: ${text}`);
    }
  }
  throw new Error("too many redirects at the IdP");
}

function clientAuthentication() {
  switch (cfg.auth_method) {
    case "client_secret_basic":
      return client.ClientSecretBasic(cfg.client_secret);
    case "client_secret_post":
      return client.ClientSecretPost(cfg.client_secret);
    case "none":
      return client.None();
    default:
      throw new Error(`unknown auth_method ${cfg.auth_method}`);
  }
}

// openid-client's errors: ResponseBodyError has error/status, others a code; keep what tests need.
function describe(err) {
  return {
    step,
    name: err?.name,
    message: err?.message,
    code: err?.code,
    error: err?.error,
    error_description: err?.error_description,
    status: err?.status,
    cause: err?.cause instanceof Error ? err.cause.message : err?.cause,
  };
}

async function attempt(name, fn) {
  step = name;
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    return { ok: false, error: describe(err) };
  }
}

async function main() {
  step = "discovery";
  // The live server speaks plain HTTP on 127.0.0.1: openid-client v6 refuses http:// endpoints unless
  // allowInsecureRequests is set. enableNonRepudiationChecks makes it verify the ID token's
  // signature against the JWKS (by default v6 relies on TLS for token endpoint responses, as OIDC
  // Core 3.1.3.7 item 6 allows).
  const config = await client.discovery(
    new URL(cfg.issuer),
    cfg.client_id,
    { redirect_uris: [cfg.redirect_uri], post_logout_redirect_uris: [cfg.redirect_uri] },
    clientAuthentication(),
    { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks] },
  );
  const metadata = config.serverMetadata();
  result.discovery = {
    issuer: metadata.issuer,
    authorization_endpoint: metadata.authorization_endpoint,
    token_endpoint: metadata.token_endpoint,
    code_challenge_methods_supported: metadata.code_challenge_methods_supported,
  };

  step = "authorization_url";
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const parameters = {
    redirect_uri: cfg.redirect_uri,
    scope: cfg.scope ?? "openid profile email offline_access",
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: "S256",
    state,
    nonce,
  };
  if (cfg.acr_values) parameters.acr_values = cfg.acr_values;
  const authorizationUrl = client.buildAuthorizationUrl(config, parameters);
  result.authorization_url = authorizationUrl.href;

  step = "sign_in";
  const browser = new Browser();
  const callback = await signInAndConsent(browser, authorizationUrl);
  result.callback = callback.location;
  result.pages = callback.pages;

  step = "code_exchange";
  const tokens = await client.authorizationCodeGrant(config, new URL(callback.location), {
    pkceCodeVerifier: codeVerifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  result.tokens = {
    token_type: tokens.token_type,
    expires_in: tokens.expires_in,
    scope: tokens.scope,
    has_refresh_token: typeof tokens.refresh_token === "string",
  };
  result.id_token_claims = tokens.claims();

  step = "userinfo";
  result.userinfo = await client.fetchUserInfo(config, tokens.access_token, result.id_token_claims.sub);

  step = "refresh";
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  result.refreshed_id_token_claims = refreshed.claims() ?? null;
  result.refresh_rotated = refreshed.refresh_token !== tokens.refresh_token;

  result.introspection = await attempt("introspection", () =>
    client.tokenIntrospection(config, refreshed.access_token),
  );

  step = "revocation";
  // RFC 7009 2.1: revoking the access token also revokes its refresh token here (docs/flows.md).
  await client.tokenRevocation(config, refreshed.access_token, { token_type_hint: "access_token" });
  result.revoked = {
    userinfo: await attempt("userinfo_after_revocation", () =>
      client.fetchUserInfo(config, refreshed.access_token, client.skipSubjectCheck),
    ),
    refresh: await attempt("refresh_after_revocation", () =>
      client.refreshTokenGrant(config, refreshed.refresh_token),
    ),
  };

  step = "end_session";
  const logoutState = client.randomState();
  const endSessionUrl = client.buildEndSessionUrl(config, {
    id_token_hint: refreshed.id_token,
    post_logout_redirect_uri: cfg.redirect_uri,
    state: logoutState,
  });
  // docs/logout.md: an id_token_hint of this browser's session logs out at once (a redirect);
  // otherwise the OP shows a confirmation page whose "Sign out" button posts confirm=yes.
  const first = await browser.get(endSessionUrl.href);
  const form = formWith(first.text, "confirm");
  result.end_session = {
    first_status: first.status,
    first_text: first.text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").slice(0, 600),
    confirmation_shown: form !== null,
    status: first.status,
    location: first.location,
    expected_state: logoutState,
  };
  if (form) {
    const loggedOut = await browser.post(
      new URL(form.action || endSessionUrl.href, endSessionUrl),
      submission(form, {}, ["confirm", "yes"]),
    );
    Object.assign(result.end_session, { status: loggedOut.status, location: loggedOut.location });
  }

  step = "prompt_none_after_logout";
  const silent = client.buildAuthorizationUrl(config, {
    ...parameters,
    prompt: "none",
    state: client.randomState(),
  });
  const afterLogout = await browser.get(silent.href);
  result.prompt_none_after_logout = { status: afterLogout.status, location: afterLogout.location };
}

try {
  await main();
  process.stdout.write(JSON.stringify(result));
} catch (err) {
  result.error = describe(err);
  process.stdout.write(JSON.stringify(result));
  process.exitCode = 1;
}
