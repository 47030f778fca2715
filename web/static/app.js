// Lethe console: the one script. It keeps the dashboard's job table live from the server-sent events at
// /api/v1/jobs/events, and runs the two WebAuthn ceremonies: enrolling a passkey (account page) and
// signing an approval with it (release page). No inline script anywhere (the CSP forbids it).
"use strict";

function renderJobs(table, jobs) {
  const body = table.tBodies[0];
  const rows = jobs.map(function (j) {
    const tr = document.createElement("tr");
    tr.dataset.job = j.id;
    const cells = [j.id, j.kind, j.state, null, j.error || j.message || ""];
    cells.forEach(function (text, i) {
      const td = document.createElement("td");
      if (i === 3) {
        const p = document.createElement("progress");
        p.max = 1;
        p.value = j.state === "succeeded" ? 1 : (j.progress || 0);
        td.appendChild(p);
      } else {
        td.textContent = text; // text, never HTML: job messages may hold anything
      }
      if (i === 2) td.className = "state";
      if (i === 4) td.className = "message";
      tr.appendChild(td);
    });
    return tr;
  });
  body.replaceChildren.apply(body, rows);
}

document.addEventListener("DOMContentLoaded", function () {
  const table = document.querySelector("table[data-live]");
  if (!table || !window.EventSource) return;
  const source = new EventSource(table.dataset.live);
  source.addEventListener("jobs", function (ev) {
    try {
      renderJobs(table, JSON.parse(ev.data));
      table.dataset.updated = String(Date.now());
    } catch (e) {
      // A malformed event leaves the last good table in place.
    }
  });
});

// base64url without padding, as WebAuthn and the server use it.
function toB64url(buf) {
  const bytes = new Uint8Array(buf);
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromB64url(s) {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b.charCodeAt(i);
  return out;
}

function showError(form, testid, message) {
  const p = form.querySelector('[data-testid="' + testid + '"]');
  if (p) {
    p.textContent = message;
    p.hidden = false;
  }
}

// Account page: make a passkey (ES256) for this account and send its public key to the server.
document.addEventListener("DOMContentLoaded", function () {
  const form = document.getElementById("passkey-enrol");
  if (!form) return;
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (!window.PublicKeyCredential) {
      showError(form, "passkey-error", "This browser has no WebAuthn (passkeys need a secure origin: https or localhost).");
      return;
    }
    const d = form.dataset;
    navigator.credentials
      .create({
        publicKey: {
          challenge: fromB64url(d.challenge),
          rp: { name: "Lethe" },
          user: { id: fromB64url(d.userHandle), name: d.username, displayName: d.username },
          pubKeyCredParams: [{ type: "public-key", alg: -7 }],
          authenticatorSelection: { userVerification: "preferred", residentKey: "discouraged" },
          attestation: "none",
          timeout: 60000,
        },
      })
      .then(function (cred) {
        const spki = cred.response.getPublicKey && cred.response.getPublicKey();
        if (!spki) throw new Error("the authenticator gave no ES256 public key");
        form.elements.public_key.value = toB64url(spki);
        form.elements.credential_id.value = toB64url(cred.rawId);
        form.elements.client_data.value = toB64url(cred.response.clientDataJSON);
        form.submit();
      })
      .catch(function (e) {
        showError(form, "passkey-error", "No passkey was made: " + e.message);
      });
  });
});

// Release page: an approval is an assertion by one of the reviewer's passkeys over the statement the
// server names for this comment; a rejection is a plain form post.
document.addEventListener("DOMContentLoaded", function () {
  const form = document.getElementById("review");
  if (!form) return;
  form.addEventListener("submit", function (ev) {
    const button = ev.submitter;
    if (!button || button.value !== "approve") return;
    ev.preventDefault();
    const comment = form.elements.comment.value;
    const url = "/api/v1/releases/" + encodeURIComponent(form.dataset.run) + "/statement?comment=" + encodeURIComponent(comment);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) throw new Error(body.error || r.statusText);
          return body;
        });
      })
      .then(function (st) {
        const allow = st.keys
          .filter(function (k) { return k.kind === "webauthn" && k.credential_id; })
          .map(function (k) { return { type: "public-key", id: fromB64url(k.credential_id) }; });
        if (allow.length === 0) throw new Error("you have no confirmed passkey; enrol one on your account page and ask an admin to confirm it");
        return navigator.credentials.get({
          publicKey: { challenge: fromB64url(st.challenge), allowCredentials: allow, userVerification: "preferred", timeout: 60000 },
        });
      })
      .then(function (a) {
        form.elements.credential.value = toB64url(a.rawId);
        form.elements.signature.value = toB64url(a.response.signature);
        form.elements.authenticator_data.value = toB64url(a.response.authenticatorData);
        form.elements.client_data.value = toB64url(a.response.clientDataJSON);
        const d = document.createElement("input");
        d.type = "hidden";
        d.name = "decision";
        d.value = "approve";
        form.appendChild(d);
        form.submit();
      })
      .catch(function (e) {
        showError(form, "review-error", "Not approved: " + e.message);
      });
  });
});
