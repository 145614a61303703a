/* A fake Mollie.js (https://js.mollie.com/v1/mollie.js), served by the local fake Mollie
 * (tests/fakes/mollie_components.py) at /v1/mollie.js. It follows docs.mollie.com's reference:
 * Mollie(profileId[, {locale, testmode}]) -> {createComponent(type[, options]), createToken()};
 * a component has mount(selector|element), unmount(), addEventListener('change'|'blur'|'focus', cb).
 *
 * The card data stays between the iframes and the fake's origin: each field lives in an iframe
 * served by the fake; on createToken() this page asks each iframe (postMessage) to hand its value
 * to the fake under this instance's session, then asks the fake (fetch, CORS) for a token for the
 * session. This page only ever sees each field's state (error, touched, valid, dirty). */
(function () {
  'use strict';

  var ORIGIN = new URL(document.currentScript.src).origin;
  var TYPES = ['cardHolder', 'cardNumber', 'expiryDate', 'verificationCode'];
  var EVENTS = ['blur', 'focus', 'change'];
  var TITLES = {
    en: {cardHolder: 'Card holder', cardNumber: 'Card number', expiryDate: 'Expiry date', verificationCode: 'CVC'},
    nl: {cardHolder: 'Kaarthouder', cardNumber: 'Kaartnummer', expiryDate: 'Vervaldatum', verificationCode: 'CVC'}
  };
  var MESSAGES = {
    en: {notMounted: 'Not all card fields are on the page.', noAnswer: 'The card fields did not answer. Please try again.',
         unreachable: 'Mollie could not be reached. Please try again.'},
    nl: {notMounted: 'Niet alle kaartvelden staan op de pagina.',
         noAnswer: 'De kaartvelden reageerden niet. Probeer het opnieuw.',
         unreachable: 'Mollie is niet bereikbaar. Probeer het opnieuw.'}
  };
  var ANSWER_WITHIN = 5000; // ms an iframe has to hand over its value

  function language(locale) {
    return /^nl/i.test(locale || navigator.language || '') ? 'nl' : 'en';
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
  }

  function Component(mollie, type) {
    this._mollie = mollie;
    this._type = type;
    this._listeners = {blur: [], focus: [], change: []};
    this._reset();
  }

  Component.prototype._reset = function () {
    this._container = null;
    this._frame = null;
    this._state = {error: null, touched: false, valid: false, dirty: false};
  };

  Component.prototype.mount = function (target) {
    var element = typeof target === 'string' ? document.querySelector(target) : target;
    if (!(element instanceof HTMLElement)) {
      throw new Error('Mollie: no element found to mount the ' + this._type + ' component in: ' + target);
    }
    if (this._container) {
      throw new Error('Mollie: the ' + this._type + ' component is mounted already');
    }
    var mollie = this._mollie;
    var container = document.createElement('div');
    container.className = 'mollie-component mollie-component--' + this._type + ' mollie-component--is-loading';
    var frame = document.createElement('iframe');
    var query = new URLSearchParams({session: mollie._session, locale: mollie._locale, profile: mollie._profileId,
                                     origin: location.origin});
    frame.src = ORIGIN + '/components/' + this._type + '?' + query.toString();
    frame.title = TITLES[language(mollie._locale)][this._type];
    frame.name = 'mollie-component-' + this._type;
    frame.setAttribute('scrolling', 'no');
    frame.style.cssText = 'display:block;width:100%;height:44px;border:0;margin:0;padding:0;overflow:hidden;';
    container.appendChild(frame);
    element.appendChild(container);
    this._container = container;
    this._frame = frame;
    return this;
  };

  Component.prototype.unmount = function () {
    if (this._container && this._container.parentNode) {
      this._container.parentNode.removeChild(this._container);
    }
    this._reset(); // as Mollie's: state is not kept when mounted again
    return this;
  };

  Component.prototype.addEventListener = function (event, callback) {
    if (EVENTS.indexOf(event) < 0) {
      throw new Error('Mollie: unknown event "' + event + '"; possible values: ' + EVENTS.join(', '));
    }
    this._listeners[event].push(callback);
  };

  Component.prototype.removeEventListener = function (event, callback) {
    var listeners = this._listeners[event] || [];
    var at = listeners.indexOf(callback);
    if (at >= 0) listeners.splice(at, 1);
  };

  Component.prototype._receive = function (message) {
    if (!this._container) return;
    if (message.event === 'ready') {
      this._container.classList.remove('mollie-component--is-loading');
      return;
    }
    this._state = message.state;
    var classes = this._container.classList;
    classes.toggle('is-touched', !!message.state.touched);
    classes.toggle('is-valid', !!message.state.valid);
    classes.toggle('is-invalid', !message.state.valid && !!message.state.dirty);
    if (message.event === 'focus') classes.add('has-focus');
    if (message.event === 'blur') classes.remove('has-focus');
    var event = {type: message.event, componentType: this._type, error: message.state.error,
                 touched: message.state.touched, valid: message.state.valid, dirty: message.state.dirty};
    this._listeners[message.event].slice().forEach(function (callback) { callback(event); });
  };

  function MollieInstance(profileId, options) {
    this._profileId = profileId;
    this._locale = options.locale || navigator.language || 'en_US';
    this._testmode = !!options.testmode;
    this._session = randomId();
    this._components = {};
    this._waiting = {}; // nonce -> resolve, for the iframes' "handed over" answers
    var self = this;
    window.addEventListener('message', function (e) {
      var message = e.data;
      if (e.origin !== ORIGIN || !message || message.source !== 'mollie-fake' || message.session !== self._session) return;
      if (message.action === 'handedOver') {
        var resolve = self._waiting[message.nonce];
        if (resolve) resolve();
        return;
      }
      var component = self._components[message.component];
      if (component) component._receive(message);
    });
  }

  MollieInstance.prototype.createComponent = function (type, options) {
    if (type === 'card') {
      throw new Error('Mollie (fake): the "card" component is not offered; create cardHolder, cardNumber, ' +
                      'expiryDate and verificationCode');
    }
    if (TYPES.indexOf(type) < 0) {
      throw new Error('Mollie: invalid component type "' + type + '"; possible values: card, ' + TYPES.join(', '));
    }
    if (this._components[type]) {
      throw new Error('Mollie: a ' + type + ' component exists already');
    }
    this._components[type] = new Component(this, type);
    return this._components[type];
  };

  MollieInstance.prototype._handOver = function (component) {
    var self = this;
    var nonce = randomId();
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () { delete self._waiting[nonce]; reject(new Error('no answer')); },
                             ANSWER_WITHIN);
      self._waiting[nonce] = function () { clearTimeout(timer); delete self._waiting[nonce]; resolve(); };
      component._frame.contentWindow.postMessage({source: 'mollie-fake', action: 'handOver', nonce: nonce}, ORIGIN);
    });
  };

  MollieInstance.prototype.createToken = function () {
    var self = this;
    var messages = MESSAGES[language(this._locale)];
    var mounted = TYPES.map(function (type) { return self._components[type]; })
                       .filter(function (component) { return component && component._frame; });
    if (mounted.length < TYPES.length) {
      return Promise.resolve({error: {message: messages.notMounted}});
    }
    return Promise.all(mounted.map(function (component) { return self._handOver(component); })).then(function () {
      return fetch(ORIGIN + '/v1/tokens', {
        method: 'POST', mode: 'cors', headers: {'Content-Type': 'text/plain'},
        body: JSON.stringify({session: self._session, profileId: self._profileId, testmode: self._testmode,
                              locale: self._locale})
      }).then(function (response) { return response.json(); }).then(function (answer) {
        if (answer.token) return {token: answer.token}; // each createToken hands the fields over afresh
        return {error: {message: answer.error.message}};
      }, function () { return {error: {message: messages.unreachable}}; });
    }, function () { return {error: {message: messages.noAnswer}}; });
  };

  window.Mollie = function (profileId, options) {
    if (typeof profileId !== 'string' || !/^pfl_\w+$/.test(profileId)) {
      throw new Error('Mollie: a profile id (pfl_...) is required, got ' + profileId);
    }
    return new MollieInstance(profileId, options || {});
  };
})();
