/* The Risk page, part 3 of 4: live over the WebSocket (/ws/risk/), and saying so loudly
 * when it is not.
 *
 * Pushed: `event` (every audit event, with the scopes when a level changed), `run` (a
 * broker run with each order's outcome), `ack` (the trading processes), `ping` (the
 * reconciler's heartbeat, every heartbeat_interval_seconds). When the socket is down, or
 * no ping came for stale_after_seconds, a banner over the state says the page may be out
 * of date and the controls are marked possibly stale; on reconnect the page re-reads the
 * whole state (it may have missed pushes) and the banner goes once pings flow again. */
(function () {
  'use strict';

  var KS = window.KS, $ = KS.$, h = KS.h, state = KS.state, config = KS.config, page = KS.page;
  var socket = null;
  var reconnectDelay = 500;
  var resyncTimer = null;
  var lastSeq = 0;
  var downSince = null;  // when the socket closed (ms), while it is down
  var ended = null;  // the server closed the socket for good (session ended): why

  state.history.forEach(function (e) { lastSeq = Math.max(lastSeq, e.seq); });

  function setLive(on) {
    page.connected = on;
    var ind = $('risk-live');
    ind.className = 'risk-live ' + (on ? 'risk-live-on' : 'risk-live-off');
    ind.textContent = on ? 'live' : (ended ? 'disconnected' : 'reconnecting…');
  }

  function showBanner(kind, title, text, link) {
    var box = $('risk-banner');
    box.hidden = false;
    box.className = 'risk-banner risk-banner-' + kind;
    box.dataset.kind = kind;
    box.textContent = '';
    box.appendChild(h('strong', { text: title }));
    box.appendChild(h('span', { text: ' ' + text }));
    if (link) { box.appendChild(h('a', { href: link.href, text: link.text })); }
  }

  function hideBanner() {
    var box = $('risk-banner');
    box.hidden = true;
    box.dataset.kind = '';
  }

  // The controls still work (a stop is never blocked), but say what they are based on.
  function markStale(stale) {
    page.stale = stale;
    KS.root.classList.toggle('is-stale', stale);
    document.querySelectorAll('.risk-actions .risk-btn, button[data-resume]').forEach(function (b) {
      b.classList.toggle('possibly-stale', stale);
      if (stale) { b.setAttribute('data-stale', 'the state shown may be out of date'); }
      else { b.removeAttribute('data-stale'); }
    });
  }

  // Once a second: is what the page shows still known to be current?
  function watchdog() {
    var now = Date.now();
    if (ended) {
      showBanner('ended', 'Disconnected.', ended + ' What you see is no longer updated.',
                 { href: config.login_url, text: 'Log in again' });
      markStale(true);
      return;
    }
    if (!page.connected) {
      var since = downSince || now;
      showBanner('down', 'Connection to the kill switch server lost',
                 'since ' + KS.fmtClock(since) + ' (' + KS.fmtDuration((now - since) / 1000) + '): the state below may be ' +
                 'out of date and changes made elsewhere are not shown. Reconnecting…');
      markStale(true);
      return;
    }
    var quiet = (now - page.lastPingAt) / 1000;
    if (page.lastPingAt && quiet > config.stale_after_seconds) {
      showBanner('quiet', 'No heartbeat from the kill switch service',
                 'for ' + Math.floor(quiet) + ' s (last at ' + KS.fmtClock(page.lastPingAt) + '): the reconciler may be ' +
                 'down, so the state below may be out of date, and trading processes read halt once the heartbeat ' +
                 'is older than ' + config.client_stale_after_seconds + ' s.');
      markStale(true);
      return;
    }
    if (!page.lastPingAt && page.openedAt && (now - page.openedAt) / 1000 > config.stale_after_seconds) {
      showBanner('quiet', 'No heartbeat from the kill switch service',
                 'since the page connected: the reconciler may not be running, so the state below may be out of date.');
      markStale(true);
      return;
    }
    hideBanner();
    markStale(false);
  }

  KS.resync = function () {
    return fetch(config.state_url, { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) { throw new Error('HTTP ' + r.status); } return r.json(); })
      .then(function (fresh) {
        if (fresh.version < state.version) {
          // Read before a change this page has already drawn from its push: never draw an
          // older state over a newer one; ask again.
          resyncSoon();
          return;
        }
        KS.skewMs = Date.parse(fresh.server_now) - Date.now();
        ['scopes', 'history', 'version', 'clients', 'runs', 'suggestions', 'resume_requests', 'resume_approvals'].forEach(function (k) { state[k] = fresh[k]; });
        state.history.forEach(function (e) {
          lastSeq = Math.max(lastSeq, e.seq);
          if (!page.shown[e.seq]) { page.shown[e.seq] = Date.now(); }
        });
        (state.runs || []).forEach(function (r) { page.runs[r.id] = page.runs[r.id] || Date.now(); });
        page.resynced = Date.now();
        KS.renderAll();
      })
      .catch(function () { /* the next push or reconnect tries again */ });
  };

  function resyncSoon() {
    if (resyncTimer) { return; }
    resyncTimer = setTimeout(function () { resyncTimer = null; KS.resync(); }, 150);
  }

  function onEvent(payload) {
    var e = payload.event;
    var gap = lastSeq && e.seq > lastSeq + 1;
    if (payload.scopes) {
      state.scopes = payload.scopes;
      state.version = Math.max(state.version, e.version);
    }
    if (!KS.addEvent(e)) { return; }
    lastSeq = Math.max(lastSeq, e.seq);
    KS.renderScopes(); KS.renderHistory(); KS.renderClients();
    page.shown[e.seq] = Date.now();
    if (payload.changed && !(KS.ownSeqs && KS.ownSeqs[e.seq])) {  // this page's own answer says more
      KS.flash(e.scope + ' is now ' + e.new_level.toUpperCase() + ' (was ' + e.previous_level + ') — ' +
               e.actor + ' via ' + e.source + (e.reason ? ': ' + e.reason : ''), e.new_level === 'running' ? 'ok' : 'error');
    }
    if (gap) { resyncSoon(); }
    if (KS.afterEvent) { KS.afterEvent(e); }  // e.g. risk-resume.js: the resume requests
  }

  function onRun(payload) {
    KS.mergeRun(payload.run);
    page.runs[payload.run.id] = Date.now();
    KS.renderRuns();
  }

  function onAck(payload) {
    state.clients = payload.clients;
    if (payload.version) { state.version = Math.max(state.version, payload.version); }
    page.acks += 1;
    KS.renderClients();
  }

  function connect() {
    var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    socket = new WebSocket(scheme + location.host + config.ws_path);
    socket.onopen = function () {
      page.opens += 1;
      page.openedAt = Date.now();
      reconnectDelay = 500;
      downSince = null;
      setLive(true);
      KS.resync();  // catch up on whatever was pushed while the socket was down
    };
    socket.onmessage = function (m) {
      var msg;
      try { msg = JSON.parse(m.data); } catch (err) { return; }
      page.received += 1;
      if (msg.kind === 'event') { onEvent(msg.payload); }
      else if (msg.kind === 'run') { onRun(msg.payload); }
      else if (msg.kind === 'ack') { onAck(msg.payload); }
      else if (msg.kind === 'ping') {
        page.lastPingAt = Date.now();
        if (msg.payload && msg.payload.id) { page.pings[msg.payload.id] = page.lastPingAt; }
      }
      else if (msg.kind === 'closed') { ended = (msg.payload && msg.payload.reason) || 'The server closed the connection.'; }
    };
    socket.onclose = function (ev) {
      page.closes += 1;
      downSince = downSince || Date.now();
      if (ev.code === 4403 && !ended) { ended = 'Your session ended or you no longer have the viewer role.'; }
      setLive(false);
      watchdog();
      if (ended) { return; }  // reconnecting would only be refused again
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 5000);
    };
  }

  KS.startLive = function () {
    setInterval(watchdog, 1000);
    connect();
  };
})();
