/* A fake Stripe.js, served by the local Stripe (tests/fakes/stripe_checkout.py) at /<release>/stripe.js
 * and /v3/. It implements what docs.stripe.com/js/embedded_checkout documents:
 *   Stripe(publishableKey, {locale}) -> stripe
 *   stripe.createEmbeddedCheckoutPage({fetchClientSecret, onComplete}) -> Promise<checkout>
 *     (from the dahlia release on; before it the same was stripe.initEmbeddedCheckout, and calling
 *     that name from dahlia on throws an IntegrationError: docs.stripe.com/changelog/dahlia/2026-03-25/
 *     rename-init-embedded-checkout-to-create-embedded-checkout-page)
 *   checkout.mount(selectorOrElement), checkout.unmount(), checkout.destroy()
 * One embedded checkout at a time; destroy() it before creating another.
 * The checkout is an iframe on the fake's origin; it talks to this script by postMessage, and only
 * messages from that origin and that frame are heeded. */
(function () {
  'use strict';

  var src = new URL(document.currentScript.src);
  var ORIGIN = src.origin;
  var RELEASE = src.pathname.split('/')[1] || 'v3';
  var RELEASES = ['v3', 'acacia', 'basil', 'clover', 'dahlia', 'endive'];
  var RENAMED = RELEASES.indexOf(RELEASE) >= RELEASES.indexOf('dahlia');
  var CLIENT_SECRET = /^(cs_(?:test|live)_[A-Za-z0-9]+)_secret_[A-Za-z0-9]+$/;
  var MESSAGE_SOURCE = 'fake-stripe-embedded-checkout';
  var active = null; // the one embedded checkout (or the promise of it) that exists
  var frames = 0;

  function IntegrationError(message) {
    var error = new Error(message);
    error.name = 'IntegrationError';
    return error;
  }

  function EmbeddedCheckout(sessionId, clientSecret, locale, options) {
    this._sessionId = sessionId;
    this._clientSecret = clientSecret;
    this._locale = locale;
    this._onComplete = options.onComplete;
    this._frame = null;
    this._listener = null;
    this._destroyed = false;
    this._completed = false;
  }

  EmbeddedCheckout.prototype.mount = function (target) {
    if (this._destroyed) {
      throw IntegrationError('This Embedded Checkout has been destroyed. Create a new one to mount it again.');
    }
    if (this._frame) {
      throw IntegrationError('This Embedded Checkout is already mounted. Call unmount() before mounting it again.');
    }
    var container = typeof target === 'string' ? document.querySelector(target) : target;
    if (!container || typeof container.appendChild !== 'function') {
      throw IntegrationError('The selector you specified (' + String(target) +
                             ') applies to no DOM elements that are currently on the page.');
    }
    var self = this;
    var frame = document.createElement('iframe');
    frames += 1;
    frame.name = 'embedded-checkout-' + frames;
    frame.title = 'Secure payment';
    frame.setAttribute('allow', 'payment *');
    frame.setAttribute('frameborder', '0');
    frame.setAttribute('scrolling', 'no');
    // Full width, never a fixed pixel width (no sideways scroll on a phone); the height follows the page.
    frame.style.cssText = 'display:block;width:100%;max-width:100%;min-width:0;border:0;height:480px;overflow:hidden;';
    frame.src = ORIGIN + '/embedded/' + encodeURIComponent(this._sessionId) +
      '?secret=' + encodeURIComponent(this._clientSecret) +
      '&locale=' + encodeURIComponent(this._locale) +
      '&origin=' + encodeURIComponent(window.location.origin);
    this._listener = function (event) {
      if (event.origin !== ORIGIN || event.source !== frame.contentWindow) {
        return;
      }
      var data = event.data || {};
      if (data.source !== MESSAGE_SOURCE) {
        return;
      }
      if (data.type === 'resize' && typeof data.height === 'number' && data.height > 0) {
        frame.style.height = Math.ceil(data.height) + 'px';
      } else if (data.type === 'complete' && !self._completed) {
        self._completed = true;
        if (typeof data.redirect === 'string' && /^https?:/.test(data.redirect)) {
          window.location.assign(data.redirect); // redirect_on_completion: always
        } else if (typeof self._onComplete === 'function') {
          self._onComplete(); // if_required (a card payment) or never
        }
      } else if (data.type === 'navigate' && typeof data.url === 'string' && /^https?:/.test(data.url)) {
        window.location.assign(data.url); // a redirect-based method (iDEAL): the bank, top-level
      }
    };
    window.addEventListener('message', this._listener);
    container.appendChild(frame);
    this._frame = frame;
  };

  EmbeddedCheckout.prototype.unmount = function () {
    if (this._listener) {
      window.removeEventListener('message', this._listener);
      this._listener = null;
    }
    if (this._frame) {
      this._frame.remove();
      this._frame = null;
    }
  };

  EmbeddedCheckout.prototype.destroy = function () {
    this.unmount();
    this._destroyed = true;
    if (active === this) {
      active = null;
    }
  };

  function createEmbeddedCheckout(locale, options, name) {
    if (!options || (typeof options.fetchClientSecret !== 'function' && typeof options.clientSecret !== 'string')) {
      return Promise.reject(IntegrationError('Invalid value for ' + name + ': fetchClientSecret should be a ' +
                                             'function that returns a Promise of the Checkout Session\'s client secret.'));
    }
    if (active) {
      return Promise.reject(IntegrationError('You cannot have multiple Embedded Checkout objects. ' +
                                             'Call destroy() on the existing one before creating another.'));
    }
    var pending = {};
    active = pending;
    var fetching;
    try {
      fetching = Promise.resolve(options.fetchClientSecret ? options.fetchClientSecret() : options.clientSecret);
    } catch (error) {
      fetching = Promise.reject(error);
    }
    return fetching.then(function (clientSecret) {
      var match = typeof clientSecret === 'string' && CLIENT_SECRET.exec(clientSecret);
      if (!match) {
        throw IntegrationError('fetchClientSecret resolved with an invalid client secret: expected the ' +
                               'client_secret of a Checkout Session (cs_..._secret_...), got ' + String(clientSecret) + '.');
      }
      var checkout = new EmbeddedCheckout(match[1], clientSecret, locale, options);
      active = checkout;
      return checkout;
    }, function (reason) {
      throw new Error('fetchClientSecret failed: ' + (reason && reason.message ? reason.message : String(reason)));
    }).catch(function (error) {
      if (active === pending) {
        active = null;
      }
      throw error;
    });
  }

  function Stripe(publishableKey, options) {
    if (typeof publishableKey !== 'string' || !/^pk_(test|live)_[A-Za-z0-9]+$/.test(publishableKey)) {
      throw IntegrationError('Invalid value for Stripe(): apiKey should be a publishable key ' +
                             '(pk_test_... or pk_live_...). You specified: ' + String(publishableKey) + '.');
    }
    options = options || {};
    var locale = options.locale && options.locale !== 'auto' ? options.locale : (navigator.language || 'en');
    var stripe = {};
    if (RENAMED) {
      stripe.createEmbeddedCheckoutPage = function (checkoutOptions) {
        return createEmbeddedCheckout(locale, checkoutOptions, 'createEmbeddedCheckoutPage');
      };
      stripe.initEmbeddedCheckout = function () {
        throw IntegrationError('stripe.initEmbeddedCheckout has been renamed to stripe.createEmbeddedCheckoutPage ' +
                               'in the ' + RELEASE + ' release of Stripe.js.');
      };
    } else {
      stripe.initEmbeddedCheckout = function (checkoutOptions) {
        return createEmbeddedCheckout(locale, checkoutOptions, 'initEmbeddedCheckout');
      };
    }
    return stripe;
  }

  Stripe.version = RELEASE;
  window.Stripe = Stripe;
})();
