/* One card field of the fake Mollie Components, inside its iframe on the fake Mollie's origin
 * (tests/fakes/mollie_components.py serves the page at /components/<type>). It checks the field as
 * the customer types and tells the merchant's page only the field's state (change, focus, blur with
 * {error, touched, valid, dirty}); asked to hand over, it sends its value to the fake Mollie itself,
 * never to the merchant's page. Error messages in the locale Mollie() was given (en or nl). */
(function () {
  'use strict';

  var config = document.body.dataset;
  var input = document.getElementById('field');
  var parentOrigin = config.origin;
  var MESSAGES = {
    en: {cardHolder: {empty: "Enter the card holder's name"},
         cardNumber: {empty: 'Enter a card number', invalid: 'Card number is invalid'},
         expiryDate: {empty: 'Enter an expiry date', invalid: 'Expiry date is invalid', expired: 'The card has expired'},
         verificationCode: {empty: 'Enter the CVC', invalid: 'CVC is invalid'}},
    nl: {cardHolder: {empty: 'Vul de naam van de kaarthouder in'},
         cardNumber: {empty: 'Vul een kaartnummer in', invalid: 'Kaartnummer is ongeldig'},
         expiryDate: {empty: 'Vul een vervaldatum in', invalid: 'Vervaldatum is ongeldig', expired: 'De kaart is verlopen'},
         verificationCode: {empty: 'Vul de CVC in', invalid: 'CVC is ongeldig'}}
  };
  var messages = MESSAGES[config.locale === 'nl' ? 'nl' : 'en'][config.type];
  var state = {error: messages.empty, touched: false, valid: false, dirty: false};

  function luhn(digits) {
    var total = 0;
    for (var i = 0; i < digits.length; i++) {
      var digit = +digits[digits.length - 1 - i];
      if (i % 2) digit = digit > 4 ? digit * 2 - 9 : digit * 2;
      total += digit;
    }
    return total % 10 === 0;
  }

  function problem(value) { // the same checks as card_field_valid() at the fake
    value = value.trim();
    if (!value) return messages.empty;
    if (config.type === 'cardNumber') {
      var digits = value.replace(/ /g, '');
      return /^\d{12,19}$/.test(digits) && luhn(digits) ? null : messages.invalid;
    }
    if (config.type === 'verificationCode') return /^\d{3,4}$/.test(value) ? null : messages.invalid;
    if (config.type === 'expiryDate') {
      var expiry = /^(\d{2})\s*\/?\s*(\d{2})$/.exec(value);
      if (!expiry || +expiry[1] < 1 || +expiry[1] > 12) return messages.invalid;
      var now = new Date();
      return (2000 + +expiry[2]) * 12 + +expiry[1] >= now.getFullYear() * 12 + now.getMonth() + 1
        ? null : messages.expired;
    }
    return null;
  }

  function tell(message) {
    message.source = 'mollie-fake';
    message.session = config.session;
    message.component = config.type;
    window.parent.postMessage(message, parentOrigin);
  }

  function emit(event) {
    state.error = problem(input.value);
    state.valid = state.error === null;
    input.setAttribute('aria-invalid', String(state.touched && !state.valid));
    tell({event: event, state: {error: state.error, touched: state.touched, valid: state.valid, dirty: state.dirty}});
  }

  input.addEventListener('focus', function () { state.touched = true; emit('focus'); });
  input.addEventListener('input', function () { state.dirty = true; emit('change'); });
  input.addEventListener('blur', function () { emit('blur'); });

  window.addEventListener('message', function (e) {
    var message = e.data;
    if (e.origin !== parentOrigin || !message || message.source !== 'mollie-fake' || message.action !== 'handOver') return;
    // Submitting shows every field's error, touched or not, as the card form does.
    state.touched = true;
    emit('change');
    fetch('/components/' + encodeURIComponent(config.session) + '/' + config.type, {
      method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({value: input.value})
    }).then(function () { tell({action: 'handedOver', nonce: message.nonce}); });
  });

  tell({event: 'ready'});
})();
