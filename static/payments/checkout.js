// The checkout page's behaviour (templates/payments/checkout.html): the panel of the chosen way
// to pay, and the gateway's own form drawn in this page: Mollie Components' four card fields
// (their token is posted with the form) or Stripe's embedded Checkout (mounted once the amounts
// are chosen). When the gateway's script did not load (blocked, offline, no JavaScript at all)
// nothing here intercepts the form and the gateway's hosted page takes the payment instead.
(function () {
  "use strict";

  var form = document.getElementById("checkout-form");
  if (!form) {
    return;
  }
  var liveError = document.getElementById("checkout-live-error");
  var provider = form.getAttribute("data-embed-provider");

  function message(name) {
    return form.getAttribute("data-msg-" + name) || "";
  }

  function say(text) {
    liveError.textContent = text || "";
    liveError.hidden = !text;
    if (text) {
      liveError.scrollIntoView({block: "nearest"});
    }
  }

  function chosenMethod() {
    var radio = form.querySelector("input[name=method]:checked");
    return radio ? radio.value : "";
  }

  // Only the chosen method's panel shows (without this script every panel does).
  function showPanel() {
    var method = chosenMethod();
    form.querySelectorAll(".method-panel").forEach(function (panel) {
      panel.hidden = panel.getAttribute("data-method") !== method;
    });
  }
  form.addEventListener("change", function (event) {
    if (event.target.name === "method") {
      say("");
      showPanel();
    }
  });
  showPanel();

  function hideHostedNotes(method) {
    form.querySelectorAll(".method-panel[data-method=" + method + "] [data-hosted-note]").forEach(function (note) {
      note.hidden = true;
    });
  }

  function csrfToken() {
    var field = form.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function newKey() {
    var key = form.querySelector("input[name=idempotency_key]");
    if (key && window.crypto && typeof window.crypto.randomUUID === "function") {
      key.value = window.crypto.randomUUID();
    }
  }

  // --- Mollie Components: the card fields are Mollie's frames; the page only ever sees a token.
  function mollie() {
    var fields = form.querySelector("[data-card-fields]");
    var instance;
    try {
      instance = window.Mollie(form.getAttribute("data-embed-key"), {
        locale: form.getAttribute("data-embed-locale"),
        testmode: form.hasAttribute("data-embed-testmode")
      });
      [["cardHolder", "card-holder"], ["cardNumber", "card-number"], ["expiryDate", "expiry-date"],
        ["verificationCode", "verification-code"]].forEach(function (part) {
        var component = instance.createComponent(part[0]);
        var error = document.getElementById(part[1] + "-error");
        component.mount("#" + part[1]);
        component.addEventListener("change", function (event) {
          error.textContent = event.error && event.touched ? event.error : "";
        });
      });
    } catch (problem) {
      return;  // the hosted page, then
    }
    fields.hidden = false;
    hideHostedNotes("card");
    var busy = false;
    form.addEventListener("submit", function (event) {
      if (chosenMethod() !== "card" || form.elements.card_token.value) {
        return;
      }
      event.preventDefault();
      if (busy) {
        return;
      }
      busy = true;
      say("");
      instance.createToken().then(function (result) {
        busy = false;
        if (result.error) {
          say(result.error.message || message("card"));
          return;
        }
        form.elements.card_token.value = result.token;
        HTMLFormElement.prototype.submit.call(form);
      }, function () {
        busy = false;
        say(message("network"));
      });
    });
  }

  // --- Stripe's embedded Checkout: the session is made when the client presses Pay (with the
  // amounts and the method chosen), then Stripe's form takes the rest of the payment in this page.
  function stripe() {
    var instance;
    try {
      instance = window.Stripe(form.getAttribute("data-embed-key"), {locale: form.getAttribute("data-embed-locale")});
    } catch (problem) {
      return;
    }
    if (typeof instance.createEmbeddedCheckoutPage !== "function") {
      return;
    }
    hideHostedNotes("card");
    hideHostedNotes("sepa_direct_debit");
    var mountPoint = document.getElementById("stripe-checkout");
    var change = form.querySelector(".checkout-change");
    var checkout = null;
    var abandonUrl = "";
    var busy = false;
    // Why the portal gave no session, in the client's language (the server's words, or ours for a
    // network). Stripe.js rejects with its own wording, which is for developers and in English.
    var refusal = "";

    function locked(on) {
      form.querySelectorAll(".amount-input").forEach(function (input) {
        input.readOnly = on;
      });
      form.querySelectorAll("input[name=method]").forEach(function (radio) {
        radio.disabled = on && !radio.checked;
      });
      var summary = document.getElementById("checkout-summary");
      if (summary) {
        summary.classList.toggle("checkout-summary--locked", on);
      }
      change.hidden = !on;
    }

    function fallBack() {
      // The server shows what is wrong with the form, as it does without this script.
      form.elements.embedded.value = "";
      HTMLFormElement.prototype.submit.call(form);
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy || checkout) {
        return;
      }
      busy = true;
      say("");
      form.elements.embedded.value = "1";
      var body = new FormData(form);
      form.elements.embedded.value = "";
      locked(true);
      refusal = "";
      instance.createEmbeddedCheckoutPage({
        fetchClientSecret: function () {
          return fetch(form.action, {
            method: "POST", body: body, credentials: "same-origin",
            headers: {"Accept": "application/json", "X-Requested-With": "fetch"}
          }).then(function (response) {
            return response.json().then(function (data) {
              if (data.client_secret) {
                abandonUrl = data.abandon_url || "";
                return data.client_secret;
              }
              if (data.redirect) {
                window.location.assign(data.redirect);
                return new Promise(function () {});
              }
              if (response.status === 422) {
                fallBack();
                return new Promise(function () {});
              }
              refusal = data.error || message("network");
              throw new Error(refusal);
            });
          }, function () {
            refusal = message("network");
            throw new Error(refusal);
          });
        }
      }).then(function (instanceCheckout) {
        checkout = instanceCheckout;
        checkout.mount(mountPoint);
        busy = false;
        mountPoint.scrollIntoView({block: "start"});
      }, function () {
        busy = false;
        locked(false);
        newKey();  // the same amounts and way to pay, tried again with a new key
        say(refusal || message("network"));
      });
    });

    change.querySelector("button").addEventListener("click", function () {
      if (checkout) {
        checkout.destroy();
        checkout = null;
      }
      if (abandonUrl) {
        fetch(abandonUrl, {method: "POST", credentials: "same-origin", headers: {"X-CSRFToken": csrfToken()}});
        abandonUrl = "";
      }
      newKey();
      locked(false);
      say("");
    });
  }

  if (provider === "mollie" && typeof window.Mollie === "function") {
    mollie();
  } else if (provider === "stripe" && typeof window.Stripe === "function") {
    stripe();
  }
})();
