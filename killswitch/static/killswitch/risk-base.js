/* The Risk page, part 1 of 4: shared state and small helpers (window.KS).
 * risk-draw.js draws the state, risk-live.js keeps it live, risk.js drives the typed
 * KILL / RESUME confirmations. The server decides everything: these files only present
 * what it answers. */
(function () {
  'use strict';

  var state = JSON.parse(document.getElementById('risk-state').textContent);
  var config = JSON.parse(document.getElementById('risk-config').textContent);
  var root = document.getElementById('risk-root');

  var KS = window.KS = {
    state: state,
    config: config,
    root: root,
    canActivate: root.dataset.canActivate === '1',
    canDeactivate: root.dataset.canDeactivate === '1',
    // Server clock minus ours: cooldowns count down in the server's time.
    skewMs: Date.parse(state.server_now) - Date.now(),
  };

  // Read by the browser tests and the benchmark: when each event, run and
  // acknowledgement was drawn, the pings, and how often the socket (re)opened.
  KS.page = window.riskPage = {
    shown: {}, runs: {}, acks: 0, pings: {}, lastPingAt: 0, received: 0, opens: 0, closes: 0,
    connected: false, stale: false, state: state,
  };

  KS.$ = function (id) { return document.getElementById(id); };
  KS.serverNow = function () { return Date.now() + KS.skewMs; };

  KS.h = function (tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === 'text') { node.textContent = attrs[k]; }
        else if (k === 'className') { node.className = attrs[k]; }
        else if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) { node.setAttribute(k, attrs[k]); }
      });
    }
    (children || []).forEach(function (c) {
      if (c !== null && c !== undefined) { node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); }
    });
    return node;
  };

  // Times for people: UTC to the second, with the zone said ("2026-12-01 06:20:13 UTC").
  KS.fmtTime = function (iso) {
    if (!iso) { return '—'; }
    var d = new Date(iso);
    if (isNaN(d)) { return iso; }
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  };

  KS.fmtClock = function (ms) {
    return new Date(ms).toISOString().slice(11, 19) + ' UTC';
  };

  KS.fmtDuration = function (seconds) {
    seconds = Math.max(0, Math.ceil(seconds));
    var hrs = Math.floor(seconds / 3600), min = Math.floor((seconds % 3600) / 60), sec = seconds % 60;
    var mm = (hrs ? String(min).padStart(2, '0') : String(min)) + ':' + String(sec).padStart(2, '0');
    return hrs ? hrs + ':' + mm : mm;
  };

  KS.scope = function (name) {
    return state.scopes.filter(function (s) { return s.scope === name; })[0] || null;
  };

  KS.activeScopes = function () {
    return state.scopes.filter(function (s) { return s.level !== 'running'; });
  };

  // Seconds of the scope's own cooldown still to run.
  KS.remaining = function (scope) {
    if (!scope || !scope.cooldown_until) { return 0; }
    return Math.max(0, (Date.parse(scope.cooldown_until) - KS.serverNow()) / 1000);
  };

  // The seed's words, as the server refuses a resume now: "Kill switch cooldown active.
  // 37 minutes remaining (cooldown: 60 minutes)." (seconds for a drill's short cooldown).
  KS.cooldownMessage = function (scope) {
    var left = KS.remaining(scope);
    var total = (Date.parse(scope.cooldown_until) - Date.parse(scope.since)) / 60000;
    var remaining, length;
    if (total < 1) {
      var secs = Math.max(1, Math.ceil(left));
      remaining = secs + ' second' + (secs === 1 ? '' : 's');
      length = Math.round(total * 600) / 10 + ' seconds';
    } else {
      var mins = Math.max(1, Math.ceil(left / 60));
      remaining = mins + ' minute' + (mins === 1 ? '' : 's');
      length = Math.round(total * 100) / 100 + ' minutes';
    }
    return 'Kill switch cooldown active. ' + remaining + ' remaining (cooldown: ' + length + ').';
  };

  KS.badge = function (level) {
    return KS.h('span', { className: 'ks-badge ks-level-' + (level || 'unknown'), text: (level || '?').toUpperCase() });
  };

  // kind: ok (a change), info (nothing changed), warning, error.
  KS.flash = function (text, kind, details) {
    var box = KS.$('risk-flash');
    box.hidden = false;
    box.className = 'risk-flash risk-flash-' + kind;
    box.dataset.kind = kind;
    box.textContent = '';
    box.appendChild(KS.h('div', { className: 'risk-flash-text', text: text }));
    (details || []).forEach(function (line) {
      box.appendChild(KS.h('div', { className: 'risk-flash-warning', text: '⚠ ' + line }));
    });
  };
})();
