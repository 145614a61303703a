/* The local Stripe's checkout pages (tests/fakes/stripe_checkout.py). Framed by the fake Stripe.js,
 * a page tells its parent (only the origin it was framed for) its height, a completed payment, or a
 * bank to send the top window to; forms are submitted once. */
(function () {
  'use strict';

  var data = document.body.dataset;
  var framed = window.parent !== window && data.parentOrigin;

  function tell(message) {
    if (framed) {
      message.source = 'fake-stripe-embedded-checkout';
      window.parent.postMessage(message, data.parentOrigin);
    }
  }

  function sendHeight() {
    tell({type: 'resize', height: document.documentElement.getBoundingClientRect().height});
  }

  sendHeight();
  window.addEventListener('load', sendHeight);
  if (window.ResizeObserver) {
    new ResizeObserver(sendHeight).observe(document.documentElement);
  }
  if (data.complete) {
    tell({type: 'complete', redirect: data.redirect || null});
  }
  if (data.navigate) {
    if (framed) {
      tell({type: 'navigate', url: data.navigate});
    } else {
      window.location.assign(data.navigate);
    }
  }

  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (form.dataset.busy) {
      event.preventDefault();
      return;
    }
    form.dataset.busy = '1';
    form.setAttribute('aria-busy', 'true');
  });

  var invalid = document.querySelector('[aria-invalid="true"]');
  if (invalid) {
    invalid.focus({preventScroll: true});
  }
})();
