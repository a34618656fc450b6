/* The Risk page: draws the state, keeps it live over the WebSocket, and drives the
 * typed KILL / RESUME confirmations. The server decides everything: this file only
 * presents what it answers (a refused request shows the server's message). */
(function () {
  'use strict';

  var state = JSON.parse(document.getElementById('risk-state').textContent);
  var config = JSON.parse(document.getElementById('risk-config').textContent);
  var root = document.getElementById('risk-root');
  var canActivate = root.dataset.canActivate === '1';
  var canDeactivate = root.dataset.canDeactivate === '1';
  // Server clock minus ours: cooldowns count down in the server's time.
  var skewMs = Date.parse(state.server_now) - Date.now();
  var lastSeq = 0;
  var socket = null;
  var reconnectDelay = 500;
  var resyncTimer = null;

  // Read by the browser tests and the benchmark: when each event was drawn.
  var page = window.riskPage = { shown: {}, pings: {}, received: 0, connected: false, state: state };

  function $(id) { return document.getElementById(id); }
  function serverNow() { return Date.now() + skewMs; }

  function h(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === 'text') { node.textContent = attrs[k]; }
        else if (k === 'className') { node.className = attrs[k]; }
        else if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) { node.setAttribute(k, attrs[k]); }
      });
    }
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return node;
  }

  function fmtTime(iso) {
    if (!iso) { return '—'; }
    var d = new Date(iso);
    if (isNaN(d)) { return iso; }
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  function fmtDuration(seconds) {
    seconds = Math.max(0, Math.ceil(seconds));
    var hrs = Math.floor(seconds / 3600), min = Math.floor((seconds % 3600) / 60), sec = seconds % 60;
    var mm = (hrs ? String(min).padStart(2, '0') : String(min)) + ':' + String(sec).padStart(2, '0');
    return hrs ? hrs + ':' + mm : mm;
  }

  function remaining(scope) {
    if (!scope.cooldown_until) { return 0; }
    return Math.max(0, (Date.parse(scope.cooldown_until) - serverNow()) / 1000);
  }

  function badge(level) {
    return h('span', { className: 'ks-badge ks-level-' + (level || 'unknown'), text: (level || '?').toUpperCase() });
  }

  function activeScopes() {
    return state.scopes.filter(function (s) { return s.level !== 'running'; });
  }

  // --- Drawing ----------------------------------------------------------------------------

  function renderScopes() {
    var body = $('scopes-body');
    body.textContent = '';
    state.scopes.forEach(function (s) {
      var resume = null;
      if (canDeactivate && s.level !== 'running') {
        resume = h('button', { type: 'button', className: 'risk-btn risk-btn-small', 'data-resume': s.scope, text: 'Resume' });
        resume.addEventListener('click', function () { openResume(s.scope); });
      }
      var cooldown = h('td', { className: 'cooldown', 'data-scope': s.scope });
      body.appendChild(h('tr', { 'data-scope': s.scope, 'data-level': s.level, className: 'scope-row level-' + s.level }, [
        h('td', { className: 'scope', text: s.scope }),
        h('td', { className: 'level' }, [badge(s.level)]),
        h('td', { className: 'reason', text: s.reason || '—' }),
        h('td', { text: s.actor || '—' }),
        h('td', { text: s.source || '—' }),
        h('td', { text: fmtTime(s.since) }),
        cooldown,
        h('td', { text: String(s.version) }),
        h('td', null, resume ? [resume] : []),
      ]));
    });
    var global = state.scopes.filter(function (s) { return s.scope === 'global'; })[0];
    var g = $('risk-global-level');
    g.className = 'ks-badge ks-level-' + (global ? global.level : 'running');
    g.textContent = (global ? global.level : 'running').toUpperCase();
    $('risk-version').textContent = String(state.version);
    var options = $('kill-scope-options');
    if (options) {
      options.textContent = '';
      state.scopes.forEach(function (s) { options.appendChild(h('option', { value: s.scope })); });
    }
    fillResumeScopes();
    tick();
  }

  function renderHistory() {
    var body = $('history-body');
    body.textContent = '';
    state.history.forEach(function (e) {
      var level = e.previous_level === e.new_level ? (e.new_level || '—') : (e.previous_level + ' → ' + e.new_level);
      body.appendChild(h('tr', { 'data-seq': String(e.seq), className: 'event-row action-' + e.action + ' outcome-' + e.outcome }, [
        h('td', { text: String(e.seq) }),
        h('td', { text: fmtTime(e.timestamp) }),
        h('td', { text: e.action }),
        h('td', { text: e.outcome }),
        h('td', { text: e.scope }),
        h('td', { text: level }),
        h('td', { text: e.actor }),
        h('td', { text: e.source }),
        h('td', { className: 'reason', text: [e.reason, e.outcome !== 'applied' ? e.detail : ''].filter(Boolean).join(' — ') }),
      ]));
    });
  }

  function renderClients() {
    var box = $('clients');
    box.textContent = '';
    if (state.clients === null || state.clients === undefined) {
      box.appendChild(h('p', { className: 'help', text: 'Trading-process tracking is not installed.' }));
      return;
    }
    if (!state.clients.length) {
      box.appendChild(h('p', { className: 'help', text: 'No trading process is connected.' }));
      return;
    }
    var rows = state.clients.map(function (c) {
      var behind = c.applied_version === null || c.applied_version < state.version;
      return h('tr', { className: (c.stale ? 'client-stale ' : '') + (behind ? 'client-behind' : 'client-current') }, [
        h('td', { text: c.name }), h('td', { text: c.host + ':' + c.pid }),
        h('td', { text: [c.account, c.strategy].filter(Boolean).join(' / ') || '—' }),
        h('td', { text: c.applied_version === null ? '—' : String(c.applied_version) }),
        h('td', { text: fmtTime(c.acked_at) }),
        h('td', { text: c.level_seen || '—' }),
        h('td', { text: c.stale ? 'stale' : (c.cause || (behind ? 'behind' : 'current')) }),
      ]);
    });
    box.appendChild(h('table', { className: 'risk-table' }, [
      h('thead', null, [h('tr', null, ['Process', 'Host', 'Account / strategy', 'Acknowledged version', 'At', 'Level seen', 'Status']
        .map(function (t) { return h('th', { text: t }); }))]),
      h('tbody', null, rows),
    ]));
  }

  function renderRuns() {
    var box = $('runs');
    box.textContent = '';
    if (state.runs === null || state.runs === undefined) {
      box.appendChild(h('p', { className: 'help', text: 'Broker work is not installed.' }));
      return;
    }
    if (!state.runs.length) {
      box.appendChild(h('p', { className: 'help', text: 'No broker run yet.' }));
      return;
    }
    state.runs.forEach(function (r) {
      var actions = r.actions.map(function (a) {
        return h('tr', { className: 'outcome-' + a.outcome }, [
          h('td', { text: a.action }), h('td', { text: a.account }), h('td', { text: a.broker_order_id || '—' }),
          h('td', { text: a.symbol || '—' }), h('td', { text: [a.side, a.quantity].filter(Boolean).join(' ') }),
          h('td', { text: a.outcome }), h('td', { text: a.detail || '' }),
        ]);
      });
      box.appendChild(h('details', { className: 'run run-' + r.state, open: r.state !== 'succeeded' ? 'open' : null }, [
        h('summary', { text: 'Run ' + r.id + ' — ' + r.scope + ' ' + r.level + ' on ' + r.account + ' (' + r.broker + '): ' +
          r.state + (r.error ? ' — ' + r.error : '') + ', ' + r.actions.length + ' actions, ' + fmtTime(r.created_at) }),
        actions.length ? h('table', { className: 'risk-table' }, [
          h('thead', null, [h('tr', null, ['Action', 'Account', 'Order', 'Symbol', 'Qty', 'Outcome', 'Detail']
            .map(function (t) { return h('th', { text: t }); }))]),
          h('tbody', null, actions),
        ]) : h('p', { className: 'help', text: 'No order or position in scope.' }),
      ]));
    });
  }

  function renderAll() {
    renderScopes(); renderHistory(); renderClients(); renderRuns();
    state.history.forEach(function (e) { lastSeq = Math.max(lastSeq, e.seq); });
  }

  // Once a second: cooldown countdowns, the Resume button, the note in the Resume modal.
  function tick() {
    document.querySelectorAll('td.cooldown').forEach(function (cell) {
      var s = state.scopes.filter(function (x) { return x.scope === cell.dataset.scope; })[0];
      var left = s ? remaining(s) : 0;
      cell.textContent = left > 0 ? fmtDuration(left) + ' left' : (s && s.cooldown_until ? 'over' : '—');
      cell.classList.toggle('cooling', left > 0);
    });
    var button = $('resume-button');
    if (button) {
      var active = activeScopes();
      button.hidden = active.length === 0;
      var ready = active.filter(function (s) { return remaining(s) <= 0; });
      var soonest = active.length ? Math.min.apply(null, active.map(remaining)) : 0;
      // Looks and reads disabled during the cooldown but stays clickable: trying anyway
      // opens the modal, and the server's refusal (the seed's message) is shown.
      var cooling = active.length > 0 && ready.length === 0;
      button.classList.toggle('is-disabled', cooling);
      button.setAttribute('aria-disabled', cooling ? 'true' : 'false');
      button.textContent = cooling ? 'Resume Trading (cooldown ' + fmtDuration(soonest) + ')' : 'Resume Trading';
    }
    var note = $('resume-cooldown');
    if (note) {
      var sel = $('resume-scope');
      var chosen = state.scopes.filter(function (s) { return sel && s.scope === sel.value; })[0];
      var left = chosen ? remaining(chosen) : 0;
      note.hidden = left <= 0;
      note.textContent = left > 0 ? 'Cooldown active: ' + fmtDuration(left) + ' remaining. Resuming now will be refused.' : '';
    }
  }

  function flash(text, ok) {
    var box = $('risk-flash');
    box.hidden = false;
    box.className = 'risk-flash ' + (ok ? 'risk-flash-ok' : 'risk-flash-error');
    box.textContent = text;
  }

  // --- Live updates -------------------------------------------------------------------------

  function setLive(on) {
    page.connected = on;
    var ind = $('risk-live');
    ind.className = 'risk-live ' + (on ? 'risk-live-on' : 'risk-live-off');
    ind.textContent = on ? 'live' : 'reconnecting…';
  }

  function resync() {
    return fetch(config.state_url, { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) { throw new Error('HTTP ' + r.status); } return r.json(); })
      .then(function (fresh) {
        skewMs = Date.parse(fresh.server_now) - Date.now();
        state.scopes = fresh.scopes; state.history = fresh.history; state.version = fresh.version;
        state.clients = fresh.clients; state.runs = fresh.runs;
        renderAll();
        state.history.forEach(function (e) { if (!page.shown[e.seq]) { page.shown[e.seq] = Date.now(); } });
      })
      .catch(function () { /* next push or reconnect tries again */ });
  }

  function resyncSoon() {
    if (resyncTimer) { return; }
    resyncTimer = setTimeout(function () { resyncTimer = null; resync(); }, 150);
  }

  function onEvent(payload) {
    var e = payload.event;
    var known = state.history.some(function (x) { return x.seq === e.seq; });
    if (known) { return; }
    var gap = lastSeq && e.seq > lastSeq + 1;
    if (payload.scopes) {
      state.scopes = payload.scopes;
      state.version = Math.max(state.version, e.version);
    }
    state.history.unshift(e);
    state.history.sort(function (a, b) { return b.seq - a.seq; });
    state.history = state.history.slice(0, 20);
    lastSeq = Math.max(lastSeq, e.seq);
    renderScopes(); renderHistory(); renderClients();
    page.shown[e.seq] = Date.now();
    if (payload.changed) {
      flash(e.scope + ' is now ' + e.new_level.toUpperCase() + ' (was ' + e.previous_level + ') — ' +
            e.actor + ' via ' + e.source + (e.reason ? ': ' + e.reason : ''), e.new_level === 'running');
    }
    if (gap) { resyncSoon(); }
  }

  function connect() {
    var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    socket = new WebSocket(scheme + location.host + config.ws_path);
    socket.onopen = function () { reconnectDelay = 500; setLive(true); resync(); };
    socket.onmessage = function (m) {
      var msg;
      try { msg = JSON.parse(m.data); } catch (err) { return; }
      page.received += 1;
      if (msg.kind === 'event') { onEvent(msg.payload); }
      else if (msg.kind === 'run' || msg.kind === 'ack') { resyncSoon(); }
      else if (msg.kind === 'ping') { page.pings[msg.payload.id] = Date.now(); }
    };
    socket.onclose = function () {
      setLive(false);
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 5000);
    };
  }

  // --- Modals ---------------------------------------------------------------------------------

  function openModal(id) {
    var modal = $(id);
    modal.hidden = false;
    var err = modal.querySelector('.risk-modal-error');
    if (err) { err.hidden = true; err.textContent = ''; }
  }

  function closeModal(id) {
    var modal = $(id);
    modal.hidden = true;
    modal.querySelector('form').reset();
    updateSubmitStates();
  }

  function fillResumeScopes(preferred) {
    var sel = $('resume-scope');
    if (!sel) { return; }
    var current = preferred || sel.value;
    sel.textContent = '';
    activeScopes().forEach(function (s) {
      sel.appendChild(h('option', { value: s.scope, text: s.scope + ' — ' + s.level }));
    });
    if (current && activeScopes().some(function (s) { return s.scope === current; })) { sel.value = current; }
  }

  function openResume(scope) {
    fillResumeScopes(scope);
    openModal('resume-modal');
    tick();
    $('resume-confirm').focus();
  }

  function updateSubmitStates() {
    if ($('kill-submit')) {
      $('kill-submit').disabled = !($('kill-confirm').value === config.kill_word && $('kill-reason').value.trim());
    }
    if ($('resume-submit')) {
      $('resume-submit').disabled = !($('resume-confirm').value === config.resume_word && $('resume-scope').value);
    }
  }

  function submitForm(form, errorBox, modalId) {
    var data = new FormData(form);
    var submit = form.querySelector('button[type=submit]');
    submit.disabled = true;
    fetch(form.action, {
      method: 'POST', body: data, credentials: 'same-origin',
      headers: { Accept: 'application/json', 'X-Requested-With': 'XMLHttpRequest' },
    }).then(function (r) {
      return r.json().catch(function () { return { ok: false, error: 'The server answered HTTP ' + r.status + '.' }; });
    }).then(function (answer) {
      if (answer.ok) {
        closeModal(modalId);
        flash(answer.message, true);
        if (!page.connected) { resync(); }
      } else {
        errorBox.hidden = false;
        errorBox.textContent = answer.error || answer.message;
        flash(answer.error || answer.message, false);
        updateSubmitStates();
      }
    }).catch(function (err) {
      errorBox.hidden = false;
      errorBox.textContent = 'The request did not reach the server: ' + err.message;
      updateSubmitStates();
    });
  }

  function wire() {
    document.querySelectorAll('[data-close]').forEach(function (b) {
      b.addEventListener('click', function () { closeModal(b.dataset.close); });
    });
    document.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape') {
        ['kill-modal', 'resume-modal'].forEach(function (id) { if ($(id) && !$(id).hidden) { closeModal(id); } });
      }
    });
    if (canActivate && $('kill-button')) {
      $('kill-button').addEventListener('click', function () { openModal('kill-modal'); $('kill-reason').focus(); });
      ['kill-confirm', 'kill-reason'].forEach(function (id) { $(id).addEventListener('input', updateSubmitStates); });
      $('kill-form').addEventListener('submit', function (ev) {
        ev.preventDefault();
        if ($('kill-confirm').value !== config.kill_word) { return; }
        submitForm($('kill-form'), $('kill-error'), 'kill-modal');
      });
    }
    if (canDeactivate && $('resume-button')) {
      $('resume-button').addEventListener('click', function () { openResume(); });
      $('resume-confirm').addEventListener('input', updateSubmitStates);
      $('resume-scope').addEventListener('change', function () { tick(); updateSubmitStates(); });
      $('resume-form').addEventListener('submit', function (ev) {
        ev.preventDefault();
        if ($('resume-confirm').value !== config.resume_word) { return; }
        submitForm($('resume-form'), $('resume-error'), 'resume-modal');
      });
    }
  }

  renderAll();
  wire();
  setInterval(tick, 1000);
  connect();
})();
