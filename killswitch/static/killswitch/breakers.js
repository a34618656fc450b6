/* The Risk page's Breakers panel: every automatic breaker with its figure now, its limit,
 * its state and its last trip, kept live over the page's WebSocket group.
 *
 * A module of its own (not part of risk.js) so the Risk page's script can change without
 * touching it: it reads the panel's data from the page state ("breakers", filled by the
 * panels registry), opens its own socket to the same endpoint and listens only for
 * "breaker" pushes (the breaker loop's readings) and for events whose actor is a breaker
 * (a trip: the last trip comes from the audit log, so it re-reads the state). */
(function () {
  'use strict';

  var box = document.getElementById('breakers');
  if (!box) { return; }
  var initial = JSON.parse(document.getElementById('risk-state').textContent);
  var config = JSON.parse(document.getElementById('risk-config').textContent);
  var panel = initial.breakers || null;
  var delay = 500;
  // Read by the browser tests and the benchmark: when each trip was drawn.
  var page = window.riskBreakers = { shown: {}, pushes: 0, panel: panel };

  function h(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') { node.textContent = attrs[k]; } else if (attrs[k] !== null && attrs[k] !== undefined) {
        node.setAttribute(k, attrs[k]);
      }
    });
    (children || []).forEach(function (c) { node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return node;
  }

  function when(iso) {
    if (!iso) { return ''; }
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  var STATE_CLASS = { tripped: 'kill', breached: 'halt', warning: 'pause', armed: 'running', unknown: 'unknown', idle: 'unknown' };

  function lastTrip(row) {
    var trip = row.last_trip, latch = row.latch;
    if (latch && (!trip || (latch.seq && latch.seq > trip.seq))) {
      return (latch.seq ? '#' + latch.seq + ' ' : '') + when(new Date(latch.at * 1000).toISOString()) + ' — ' + latch.outcome;
    }
    return trip ? '#' + trip.seq + ' ' + when(trip.at) + ' → ' + trip.level : 'never';
  }

  function render() {
    box.textContent = '';
    if (panel === null) {
      box.appendChild(h('p', { 'class': 'help', text: 'Breaker readings cannot be read.' }));
      return;
    }
    if (panel.note) { box.appendChild(h('p', { 'class': 'errornote', text: panel.note })); }
    if (!panel.rows.length) {
      box.appendChild(h('p', { 'class': 'help', text: 'No breaker is configured (breakers: in config/risk_limits.yaml).' }));
      return;
    }
    var rows = panel.rows.map(function (r) {
      var figure = r.figure || '—';
      if (r.unknown) { figure += ' (' + r.unknown + ')'; }
      if (r.latch && r.latch.outcome !== 'activated') { figure += ' — ' + r.latch.outcome; }
      return h('tr', { 'class': 'breaker-row breaker-' + r.state, 'data-breaker': r.name, 'data-state': r.state }, [
        h('td', { text: r.name }), h('td', { text: r.kind }), h('td', { text: r.scope }), h('td', { text: r.level }),
        h('td', null, [h('span', { 'class': 'ks-badge ks-level-' + (STATE_CLASS[r.state] || 'unknown'), text: r.state.toUpperCase() })]),
        h('td', { 'class': 'reason', text: figure }), h('td', { text: r.limit || '—' }),
        h('td', { 'class': 'last-trip', text: lastTrip(r) }),
      ]);
    });
    // Scrolls sideways on its own on a phone, as the other tables (the page never does).
    box.appendChild(h('div', { 'class': 'risk-scroll' }, [h('table', { 'class': 'risk-table', id: 'breakers-table' }, [
      h('thead', null, [h('tr', null, ['Breaker', 'Kind', 'Scope', 'Trips to', 'State', 'Figure now', 'Limit', 'Last trip']
        .map(function (t) { return h('th', { text: t }); }))]),
      h('tbody', null, rows),
    ])]));
    panel.rows.forEach(function (r) {
      if (r.state === 'tripped' && !page.shown[r.name]) { page.shown[r.name] = Date.now(); }
    });
  }

  function resync() {
    fetch(config.state_url, { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) { throw new Error('HTTP ' + r.status); } return r.json(); })
      .then(function (fresh) { panel = page.panel = fresh.breakers || null; render(); })
      .catch(function () { /* the next push or reconnect tries again */ });
  }

  function onReadings(payload) {
    if (!panel) { resync(); return; }
    var known = {};
    panel.rows.forEach(function (r) { known[r.name] = r; });
    panel.rows = payload.breakers.map(function (r) {
      return Object.assign({}, r, { last_trip: (known[r.name] || {}).last_trip || null });
    });
    panel.note = '';
    render();
  }

  function connect() {
    var socket = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + config.ws_path);
    socket.onopen = function () { delay = 500; resync(); };
    socket.onmessage = function (m) {
      var msg;
      try { msg = JSON.parse(m.data); } catch (err) { return; }
      if (msg.kind === 'breaker') { page.pushes += 1; onReadings(msg.payload); }
      else if (msg.kind === 'event' && /^breaker:/.test((msg.payload.event || {}).actor || '')) { resync(); }
    };
    socket.onclose = function () { setTimeout(connect, delay); delay = Math.min(delay * 2, 5000); };
  }

  render();
  connect();
}());
