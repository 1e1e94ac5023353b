/* Passkeys on the hosted pages (docs/passkeys.md). Same-origin, no inline code (CSP script-src 'self').
 *
 * - Login page (#oidc-passkey-signin): a "Sign in with a passkey" button, and the browser's
 *   autofill offers passkeys in the username field (conditional mediation) where it can.
 * - Account page (#oidc-passkey-register): create a passkey and post it with its name.
 * - Second factor / step-up (#oidc-passkey-factor): the options are in the page (#oidc-passkey-options).
 * Each form gets the credential as JSON in its hidden "credential" field and is submitted; the server
 * verifies everything. Errors the browser reports are shown in #oidc-passkey-error (role=alert).
 */
(function () {
  "use strict";

  function toBytes(b64url) {
    var b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (d) {
      return { type: d.type, id: toBytes(d.id), transports: d.transports };
    });
  }

  function creationOptions(json) {
    var o = Object.assign({}, json);
    o.challenge = toBytes(json.challenge);
    o.user = Object.assign({}, json.user, { id: toBytes(json.user.id) });
    o.excludeCredentials = descriptors(json.excludeCredentials);
    return o;
  }

  function requestOptions(json) {
    var o = Object.assign({}, json);
    o.challenge = toBytes(json.challenge);
    o.allowCredentials = descriptors(json.allowCredentials);
    return o;
  }

  function credentialJSON(cred) {
    var r = cred.response;
    var response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      if (r.userHandle) response.userHandle = toB64url(r.userHandle);
    }
    return JSON.stringify({
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      response: response,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
    });
  }

  function showError(form, message) {
    var box = document.getElementById("oidc-passkey-error");
    if (!box) return;
    if (!box.classList.contains("alert")) box.className = "alert alert-danger mt-3";
    box.textContent = message;
    box.hidden = false;
    box.setAttribute("tabindex", "-1");
    box.focus();
  }

  function explain(form, error) {
    // NotAllowedError: the user cancelled, or the time ran out (the browser does not say which).
    var name = error && error.name;
    var key = name === "NotAllowedError" || name === "AbortError" ? "errorCancelled" : "errorFailed";
    return form.dataset[key] || form.dataset.errorFailed;
  }

  function csrfToken(form) {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]") ||
      document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function fetchOptions(form) {
    return fetch(form.dataset.optionsUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(form), Accept: "application/json" },
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) {
          var problem = new Error(body.error || form.dataset.errorFailed);
          problem.name = "ServerError";
          problem.loginUrl = body.login_url;
          throw problem;
        }
        return body;
      });
    });
  }

  function submitWith(form, credential) {
    form.querySelector("input[name=credential]").value = credentialJSON(credential);
    form.submit();
  }

  var supported = typeof window.PublicKeyCredential === "function" && navigator.credentials;

  // --- sign-in on the login page ---------------------------------------------------------------
  // The page keeps one form (username/password); the assertion goes to the same action, with the
  // same CSRF token, in a form made here.
  function postAssertion(main, credential) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = main.getAttribute("action");
    form.hidden = true;
    [["csrfmiddlewaretoken", csrfToken(main)], ["credential", credentialJSON(credential)]].forEach(function (pair) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = pair[0];
      input.value = pair[1];
      form.appendChild(input);
    });
    document.body.appendChild(form);
    form.submit();
  }

  function setUpSignIn(form) {
    var main = document.querySelector("main form[method=post]"); // the password form
    var pending = null; // the conditional (autofill) request, aborted by the button
    // One challenge per session: options are fetched one after the other, so the last one asked
    // for is the one the server keeps.
    var fetched = Promise.resolve();

    function ask(mediation) {
      if (pending) pending.abort();
      var controller = new AbortController();
      pending = controller;
      var asked = fetched.catch(function () {}).then(options);
      fetched = asked;
      return asked.then(function (json) {
        if (controller.signal.aborted) return null;
        var request = { publicKey: requestOptions(json), signal: controller.signal };
        if (mediation) request.mediation = mediation;
        return navigator.credentials.get(request);
      }).then(function (credential) {
        if (credential) postAssertion(main, credential);
      });
    }

    // A challenge request writes the session. Answered after a password sign-in from this page
    // replaced the session (the fixation defence), it would start a new one and its cookie would
    // sign the browser out again: the password form waits for it (at most a few seconds).
    var asking = 0;
    var leaving = false; // the password was posted: no new challenge request from this page
    function settled() {
      asking -= 1;
    }
    function options() {
      if (leaving) return Promise.reject(new Error("signing in"));
      asking += 1;
      var request = fetchOptions(form);
      request.then(settled, settled);
      return request;
    }
    var waiting = false;
    if (main) {
      main.addEventListener("submit", function (event) {
        leaving = true;
        if (!asking && !waiting) return;
        event.preventDefault();
        if (waiting) return; // a second click while waiting
        waiting = true;
        var timer;
        function send() {
          if (!waiting) return;
          waiting = false; // posted: should the page stay (stopped, Esc), the next click posts again
          window.clearTimeout(timer);
          main.submit(); // no submit event again; the button has no name to lose
        }
        fetched.then(send, send);
        timer = window.setTimeout(send, 5000);
      });
      // Back to this page from the history cache: nothing is being posted from it any more.
      window.addEventListener("pageshow", function (event) {
        if (event.persisted) leaving = waiting = false;
      });
    }

    form.hidden = false;
    form.querySelector("[data-passkey-action=sign-in]").addEventListener("click", function () {
      ask(null).catch(function (error) {
        showError(form, error.name === "ServerError" ? error.message : explain(form, error));
      });
    });
    if (typeof PublicKeyCredential.isConditionalMediationAvailable === "function") {
      PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
        // Autofill errors are silent: the user did not ask for anything yet.
        if (available) ask("conditional").catch(function () {});
      });
    }
  }

  // --- adding a passkey on the account page ------------------------------------------------------
  function setUpRegister(form) {
    form.querySelector("[data-passkey-action=register]").addEventListener("click", function () {
      var name = form.querySelector("input[name=name]");
      if (!name.reportValidity()) return;
      if (!supported) return showError(form, form.dataset.errorUnsupported);
      fetchOptions(form).then(function (json) {
        return navigator.credentials.create({ publicKey: creationOptions(json) });
      }).then(function (credential) {
        submitWith(form, credential);
      }).catch(function (error) {
        if (error.loginUrl) {
          window.location.assign(error.loginUrl);
          return;
        }
        showError(form, error.name === "ServerError" ? error.message : explain(form, error));
      });
    });
  }

  // --- a passkey as second factor / step-up --------------------------------------------------------
  function setUpFactor(widget) {
    // The widget sits in the challenge page's form, which carries the CSRF token and factor=passkey.
    var form = widget.closest("form");
    var data = document.getElementById("oidc-passkey-options");
    widget.querySelector("[data-passkey-action=verify]").addEventListener("click", function () {
      if (!supported) return showError(widget, widget.dataset.errorUnsupported);
      var json = JSON.parse(data.textContent);
      navigator.credentials.get({ publicKey: requestOptions(json) }).then(function (credential) {
        submitWith(form, credential);
      }).catch(function (error) {
        showError(widget, explain(widget, error));
      });
    });
  }

  function start() {
    var signIn = document.getElementById("oidc-passkey-signin");
    if (signIn && supported) setUpSignIn(signIn);
    var register = document.getElementById("oidc-passkey-register");
    if (register) setUpRegister(register);
    var factor = document.getElementById("oidc-passkey-factor");
    if (factor) setUpFactor(factor);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
