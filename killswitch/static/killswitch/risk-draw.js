/* The Risk page, part 2 of 4: drawing the state (scopes, processes, broker runs, history)
 * and, once a second, every scope's cooldown and its Resume button. */
(function () {
  'use strict';

  var KS = window.KS, h = KS.h, $ = KS.$, state = KS.state;
  var MAX_HISTORY = 20, MAX_RUNS = 5;

  function resumeButton(s) {
    var b = h('button', { type: 'button', className: 'risk-btn risk-btn-small risk-btn-resume', 'data-resume': s.scope,
                          text: 'Resume' });
    b.addEventListener('click', function () { if (!b.disabled) { KS.openResume(s.scope); } });
    return b;
  }

  KS.renderScopes = function () {
    var body = $('scopes-body');
    body.textContent = '';
    state.scopes.forEach(function (s) {
      body.appendChild(h('tr', { 'data-scope': s.scope, 'data-level': s.level, className: 'scope-row level-' + s.level }, [
        h('td', { className: 'scope', 'data-label': 'Scope', text: s.scope }),
        h('td', { className: 'level', 'data-label': 'Level' }, [KS.badge(s.level)]),
        h('td', { className: 'reason', 'data-label': 'Reason', text: s.reason || '—' }),
        h('td', { 'data-label': 'By', text: s.actor || '—' }),
        h('td', { 'data-label': 'Source', text: s.source || '—' }),
        h('td', { 'data-label': 'Since', text: KS.fmtTime(s.since) }),
        h('td', { className: 'cooldown', 'data-label': 'Cooldown', 'data-scope': s.scope }),
        h('td', { 'data-label': 'Version', text: String(s.version) }),
        h('td', { className: 'actions' }, KS.canDeactivate && s.level !== 'running' ? [resumeButton(s)] : []),
      ]));
    });
    var global = KS.scope('global');
    var level = global ? global.level : 'running';
    var g = $('risk-global-level');
    g.className = 'ks-badge ks-level-' + level;
    g.textContent = level.toUpperCase();
    $('risk-version').textContent = String(state.version);
    var options = $('kill-scope-options');
    if (options) {
      options.textContent = '';
      (state.suggestions || ['global']).forEach(function (name) { options.appendChild(h('option', { value: name })); });
    }
    KS.fillResumeScopes();
    KS.tick();
  };

  KS.renderHistory = function () {
    var body = $('history-body');
    body.textContent = '';
    state.history.forEach(function (e) {
      var level = e.previous_level === e.new_level ? (e.new_level || '—') : (e.previous_level + ' → ' + e.new_level);
      body.appendChild(h('tr', { 'data-seq': String(e.seq), className: 'event-row action-' + e.action + ' outcome-' + e.outcome }, [
        h('td', { 'data-label': '#', text: String(e.seq) }),
        h('td', { 'data-label': 'Time', text: KS.fmtTime(e.timestamp) }),
        h('td', { 'data-label': 'Action', text: e.action }),
        h('td', { 'data-label': 'Outcome', text: e.outcome }),
        h('td', { 'data-label': 'Scope', text: e.scope }),
        h('td', { 'data-label': 'Level', text: level }),
        h('td', { 'data-label': 'By', text: e.actor }),
        h('td', { 'data-label': 'Source', text: e.source }),
        h('td', { className: 'reason', 'data-label': 'Reason',
                  text: (e.outcome === 'applied' && e.reason) ? e.reason : [e.reason, e.detail].filter(Boolean).join(' — ') }),
      ]));
    });
  };

  KS.addEvent = function (e) {
    if (state.history.some(function (x) { return x.seq === e.seq; })) { return false; }
    state.history.unshift(e);
    state.history.sort(function (a, b) { return b.seq - a.seq; });
    state.history = state.history.slice(0, MAX_HISTORY);
    return true;
  };

  function clientStale(c) {
    // As the server judges it, with the server's clock: no report for client_stale_after_seconds.
    if (c.stale) { return true; }
    return !!c.last_seen_at && (KS.serverNow() - Date.parse(c.last_seen_at)) / 1000 > KS.config.client_stale_after_seconds + 2;
  }

  KS.renderClients = function () {
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
      var stale = clientStale(c);
      return h('tr', { 'data-client': c.client_id || c.name,
                       className: (stale ? 'client-stale ' : '') + (behind ? 'client-behind' : 'client-current') }, [
        h('td', { 'data-label': 'Process', text: c.name }), h('td', { 'data-label': 'Host', text: c.host + ':' + c.pid }),
        h('td', { 'data-label': 'Account / strategy', text: [c.account, c.strategy].filter(Boolean).join(' / ') || '—' }),
        h('td', { className: 'acked-version', 'data-label': 'Acknowledged', text: c.applied_version === null ? '—' : String(c.applied_version) }),
        h('td', { 'data-label': 'At', text: KS.fmtTime(c.acked_at) }),
        h('td', { 'data-label': 'Level seen', text: c.level_seen || '—' }),
        h('td', { 'data-label': 'Status', text: stale ? 'stale' : (c.cause || (behind ? 'behind' : 'current')) }),
      ]);
    });
    box.appendChild(h('div', { className: 'risk-scroll' }, [h('table', { className: 'risk-table' }, [
      h('thead', null, [h('tr', null, ['Process', 'Host', 'Account / strategy', 'Acknowledged version', 'At', 'Level seen', 'Status']
        .map(function (t) { return h('th', { text: t }); }))]),
      h('tbody', null, rows),
    ])]));
  };

  KS.mergeRun = function (run) {
    var runs = (state.runs || []).filter(function (r) { return r.id !== run.id; });
    runs.push(run);
    runs.sort(function (a, b) { return Date.parse(b.created_at) - Date.parse(a.created_at) || b.id - a.id; });
    state.runs = runs.slice(0, MAX_RUNS);
  };

  function outcomeSummary(r) {
    var counts = r.outcomes || {};
    return Object.keys(counts).sort().map(function (k) { return counts[k] + ' ' + k; }).join(', ');
  }

  KS.renderRuns = function () {
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
      var total = r.actions_total === undefined ? r.actions.length : r.actions_total;
      var actions = r.actions.map(function (a) {
        return h('tr', { className: 'outcome-' + a.outcome }, [
          h('td', { text: a.action }), h('td', { text: a.account }), h('td', { text: a.broker_order_id || '—' }),
          h('td', { text: a.symbol || '—' }), h('td', { text: [a.side, a.quantity].filter(Boolean).join(' ') }),
          h('td', { className: 'outcome', text: a.outcome }), h('td', { text: a.detail || '' }),
        ]);
      });
      var finished = ['completed', 'failed', 'superseded'].indexOf(r.state) >= 0;
      var more = total > r.actions.length ? h('p', { className: 'help', text: (total - r.actions.length) +
        ' more actions: .venv/bin/python manage.py killswitch runs --id ' + r.id }) : null;
      box.appendChild(h('details', { className: 'run run-' + r.state, 'data-run': String(r.id), 'data-state': r.state,
                                     open: (!finished || r.state === 'failed') ? 'open' : null }, [
        h('summary', { text: 'Run ' + r.id + ' — ' + r.scope + ' ' + r.level + ' on ' + r.account + ' (' + r.broker + '): ' +
          r.state + (r.error ? ' — ' + r.error : '') + ', ' + total + ' action' + (total === 1 ? '' : 's') +
          (total ? ' (' + outcomeSummary(r) + ')' : '') + ', ' + KS.fmtTime(r.created_at) }),
        actions.length ? h('div', { className: 'risk-scroll' }, [h('table', { className: 'risk-table' }, [
          h('thead', null, [h('tr', null, ['Action', 'Account', 'Order', 'Instrument', 'Qty', 'Outcome', 'Detail']
            .map(function (t) { return h('th', { text: t }); }))]),
          h('tbody', null, actions),
        ])]) : h('p', { className: 'help', text: finished ? 'No order or position was in scope.' : 'Starting…' }),
        more,
      ]));
    });
  };

  KS.renderAll = function () {
    KS.renderScopes(); KS.renderHistory(); KS.renderClients(); KS.renderRuns();
  };

  // The scope the top Resume Trading button resumes: global while it is stopped, else the
  // first stopped scope. Each Resume counts down its own scope, never another's.
  KS.topResumeScope = function () {
    var global = KS.scope('global');
    if (global && global.level !== 'running') { return global; }
    return KS.activeScopes()[0] || null;
  };

  function setResume(button, scope, label) {
    var left = KS.remaining(scope);
    button.disabled = left > 0;
    button.classList.toggle('is-cooling', left > 0);
    button.textContent = left > 0 ? label + ' (cooldown ' + KS.fmtDuration(left) + ')' : label;
    button.title = left > 0 ? KS.cooldownMessage(scope) + ' Resumable at ' + KS.fmtClock(Date.parse(scope.cooldown_until)) + '.'
      : 'Resume trading on ' + scope.scope + ' (typed RESUME confirmation)';
  }

  // Once a second: each scope's cooldown, each Resume button, the Resume dialog's note.
  KS.tick = function () {
    document.querySelectorAll('td.cooldown').forEach(function (cell) {
      var s = KS.scope(cell.dataset.scope);
      var left = KS.remaining(s);
      cell.textContent = left > 0 ? KS.fmtDuration(left) + ' left' : (s && s.cooldown_until ? 'over' : '—');
      cell.classList.toggle('cooling', left > 0);
    });
    document.querySelectorAll('button[data-resume]').forEach(function (b) {
      var s = KS.scope(b.dataset.resume);
      if (s) { setResume(b, s, 'Resume'); }
    });
    var top = $('resume-button');
    if (top) {
      var target = KS.topResumeScope();
      top.hidden = !target;
      if (target) {
        top.dataset.scope = target.scope;
        setResume(top, target, target.scope === 'global' ? 'Resume Trading' : 'Resume ' + target.scope);
      }
    }
    var note = $('resume-cooldown');
    if (note) {
      var chosen = KS.scope($('resume-scope').value);
      var left = KS.remaining(chosen);
      note.hidden = left <= 0;
      note.textContent = left > 0 ? KS.cooldownMessage(chosen) + ' Resumable at ' +
        KS.fmtClock(Date.parse(chosen.cooldown_until)) + ' (' + KS.fmtDuration(left) + ').' : '';
      KS.updateSubmitStates();
    }
  };
})();
