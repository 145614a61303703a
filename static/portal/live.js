// Live pages (portal/live.py): while a client has the overview, the invoice list or an invoice
// open, ask every few seconds whether anything changed for them; when it did, fetch the page
// again and swap its [data-live] regions in place, and say what changed in the polite status
// region. Never under the client's hands: a region with a field being typed in, a ticked box or
// an opened row is left alone and a fixed notice offers the update instead; what the client is
// looking at keeps its place on the screen.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  var notice = document.getElementById("live-notice");
  if (!status || !notice || !window.fetch || !window.DOMParser) {
    return;
  }
  function regions(root) {
    return Array.prototype.slice.call(root.querySelectorAll("[data-live][id]"));
  }
  if (!regions(document).length) {
    return; // nothing on this page changes live
  }
  var url = status.getAttribute("data-live-url");
  var version = status.getAttribute("data-live-version");
  var interval = (parseFloat(status.getAttribute("data-live-seconds")) || 15) * 1000;
  var failures = 0;
  var timer = null;
  var stopped = false;
  var refreshing = false;
  var forced = false;
  var waiting = false; // a change is known but a region could not take it yet
  var pointerY = null;

  document.addEventListener("pointerdown", function (event) { pointerY = event.clientY; }, { passive: true });
  document.addEventListener("pointermove", function (event) { pointerY = event.clientY; }, { passive: true });

  function schedule(ms) {
    window.clearTimeout(timer);
    timer = window.setTimeout(poll, ms);
  }

  function poll() {
    if (stopped || document.hidden) {
      return; // visibilitychange starts again
    }
    fetch(url + "?v=" + encodeURIComponent(version), {
      credentials: "same-origin", redirect: "manual", cache: "no-store", headers: { Accept: "application/json" }
    }).then(function (response) {
      if (response.status === 204) {
        failures = 0;
        return waiting ? refresh([], false) : null;
      }
      if (response.type === "opaqueredirect" || response.status === 403 || response.status === 401) {
        stopped = true; // signed out or no longer a member: the next click shows why
        return null;
      }
      if (!response.ok) {
        throw new Error("live: " + response.status);
      }
      failures = 0;
      return response.json().then(function (answer) {
        version = String(answer.version);
        return refresh(answer.messages || [], false);
      });
    }).catch(function () {
      failures += 1;
    }).then(function () {
      if (!stopped) {
        schedule(interval * Math.min(Math.pow(2, failures), 20));
      }
    });
  }

  function fieldChanged(field) {
    if (field.type === "hidden" || field.type === "submit" || field.type === "button") {
      return false;
    }
    if (field.type === "checkbox" || field.type === "radio") {
      return field.checked !== field.defaultChecked;
    }
    if (field.tagName === "SELECT") {
      return Array.prototype.some.call(field.options, function (option) {
        return option.selected !== option.defaultSelected;
      });
    }
    return field.value !== field.defaultValue;
  }

  // A region the client is working in: typing, a ticked box, a row they opened.
  function busy(region, replacement) {
    var active = document.activeElement;
    if (active && region.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) {
      return true;
    }
    if (Array.prototype.some.call(region.querySelectorAll("input, textarea, select"), fieldChanged)) {
      return true;
    }
    return region.querySelectorAll("details[open]").length > replacement.querySelectorAll("details[open]").length;
  }

  function keyOf(element) {
    if (element.id) {
      return { id: element.id };
    }
    return { tag: element.tagName, href: element.getAttribute("href"), text: element.textContent.trim() };
  }

  function find(root, key) {
    if (!key) {
      return null;
    }
    if (key.id) {
      return root.querySelector("#" + CSS.escape(key.id));
    }
    var candidates = root.querySelectorAll(key.tag);
    for (var i = 0; i < candidates.length; i += 1) {
      if (candidates[i].getAttribute("href") === key.href && candidates[i].textContent.trim() === key.text) {
        return candidates[i];
      }
    }
    return null;
  }

  // What the client is looking at (or last touched): it keeps its place on the screen.
  function anchor() {
    var y = pointerY !== null ? pointerY : window.innerHeight / 2;
    var best = null;
    var distance = Infinity;
    var root = document.getElementById("main") || document.body;
    root.querySelectorAll("[id], a[href], h1, h2, h3").forEach(function (element) {
      var rect = element.getBoundingClientRect();
      if (!rect.width && !rect.height) {
        return;
      }
      var d = Math.abs(rect.top - y);
      if (d < distance) {
        best = element;
        distance = d;
      }
    });
    return best ? { key: keyOf(best), top: best.getBoundingClientRect().top } : null;
  }

  function keepPlace(place) {
    var element = place && find(document, place.key);
    if (element) {
      var shift = element.getBoundingClientRect().top - place.top;
      if (Math.abs(shift) >= 1) {
        window.scrollBy(0, shift);
      }
    }
  }

  function swap(region, replacement) {
    // The region's own aria-live (a results list) stays quiet: the status region speaks.
    var speaking = region.closest("[aria-live]");
    var politeness = speaking ? speaking.getAttribute("aria-live") : null;
    if (speaking) {
      speaking.setAttribute("aria-live", "off");
    }
    var focused = document.activeElement && region.contains(document.activeElement) ? keyOf(document.activeElement) : null;
    region.replaceChildren.apply(region, Array.prototype.map.call(replacement.childNodes, function (node) {
      return document.importNode(node, true);
    }));
    var refocus = find(region, focused);
    if (refocus) {
      refocus.focus({ preventScroll: true });
    }
    if (window.htmx) {
      window.htmx.process(region);
    }
    region.dispatchEvent(new CustomEvent("portal:live-swapped", { bubbles: true }));
    if (speaking) {
      window.setTimeout(function () { speaking.setAttribute("aria-live", politeness); }, 200);
    }
  }

  function announce(messages) {
    if (!messages.length) {
      return;
    }
    status.textContent = "";
    window.setTimeout(function () { status.textContent = messages.join(" "); }, 100);
  }

  function refresh(messages, force) {
    if (refreshing) {
      waiting = true;
      forced = forced || force; // the client asked while a refresh was on its way: theirs follows
      announce(messages);
      return null;
    }
    refreshing = true;
    return fetch(window.location.href, { credentials: "same-origin", cache: "no-store" }).then(function (response) {
      if (!response.ok || response.redirected) {
        throw new Error("live refresh: " + response.status);
      }
      return response.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      var place = anchor();
      var held = false;
      var first = null;
      regions(document).forEach(function (region) {
        var replacement = fresh.getElementById(region.id);
        if (!replacement || !replacement.hasAttribute("data-live") || replacement.innerHTML === region.innerHTML) {
          return;
        }
        var focused = document.activeElement && region.contains(document.activeElement) && document.activeElement !== region;
        if (!force && (busy(region, replacement) || (focused && !find(replacement, keyOf(document.activeElement))))) {
          held = true;
          return;
        }
        swap(region, replacement);
        first = first || region;
      });
      keepPlace(place);
      waiting = held;
      notice.hidden = !held;
      if (force && first) {
        first.setAttribute("tabindex", "-1");
        first.focus({ preventScroll: true });
      }
      announce(messages);
    }).catch(function () {
      waiting = true;
      announce(messages);
    }).then(function () {
      refreshing = false;
      if (forced) {
        forced = false;
        refresh([], true);
      }
    });
  }

  notice.querySelector("[data-live-show]").addEventListener("click", function () {
    refresh([], true);
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && !stopped) {
      schedule(0);
    }
  });
  schedule(interval);
})();
