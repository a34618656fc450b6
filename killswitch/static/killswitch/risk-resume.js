/* The Risk page's resume decision: the open resume requests (kill_switch.resume_approvals: 2)
 * with who asked and when, Approve behind the same typed RESUME as a resume, and what is
 * still open in the scope, shown in the Resume dialog before the confirmation and again
 * with the answer.
 *
 * Loaded after risk.js; uses its KS helpers. An approval is a resume by a different risk
 * officer of the same scope (the server decides: the requester's own is refused and
 * audited), so Approve opens the Resume dialog on the request's scope. */
(function () {
  'use strict';

  var KS = window.KS, $ = KS.$, h = KS.h, state = KS.state, config = KS.config;
  var box = $('resume-requests');
  var openBox = $('resume-open');
  var asked = 0;  // the Resume dialog shows the answer to its latest question only

  function count(list) { return (list || []).length; }

  /* One line per kind of thing still open; a source that could not be read says so
   * (never shown as "nothing open"). */
  KS.openLines = function (open) {
    var lines = [];
    function failed(part) { if (part && part.error) { lines.push(part.error); return true; } return false; }
    var p = open.processes || {};
    if (!failed(p) && p.connected !== undefined) {
      lines.push(p.connected + ' trading process(es) connected' +
        (count(p.not_acknowledged) ? ', ' + count(p.not_acknowledged) + ' not acknowledging the last change (' +
          p.not_acknowledged.map(function (x) { return x.name; }).slice(0, 5).join(', ') + ')' : ', all acknowledged'));
    }
    var b = open.broker;
    if (b && !failed(b)) {
      lines.push(count(b.working_orders) + ' working order(s), ' + count(b.positions) + ' position(s)' +
        (count(b.positions) ? ': ' + b.positions.slice(0, 5).map(function (x) {
          return x.account + ' ' + x.symbol + ' ' + x.quantity; }).join(', ') : ''));
      (b.not_read || []).forEach(function (t) { lines.push('not read: ' + t); });
    }
    var r = open.runs;
    if (r && !failed(r)) {
      var bad = (r.unfinished || []).concat(r.failed || []);
      lines.push(bad.length ? 'broker runs not completed: ' + bad.map(function (x) {
        return '#' + x.id + ' ' + x.account + ' ' + x.state; }).join(', ') : 'every broker run in scope completed');
    }
    var t = open.breakers;
    if (t && !failed(t)) {
      t.forEach(function (x) { lines.push('breaker ' + x.name + ' ' + x.state + ': ' + x.note); });
    }
    return lines;
  };

  function showOpen(scope) {
    if (!openBox) { return; }
    var mine = ++asked;
    openBox.textContent = 'Reading what is still open in ' + scope + '…';
    fetch(config.open_url + '?scope=' + encodeURIComponent(scope), { credentials: 'same-origin',
      headers: { Accept: 'application/json' } })
      .then(function (r) { return r.json(); })
      .then(function (answer) {
        if (mine !== asked) { return; }
        openBox.textContent = '';
        if (!answer.ok) { openBox.appendChild(h('p', { className: 'errornote', text: answer.error })); return; }
        openBox.appendChild(h('p', { text: 'Still open in ' + answer.scope + ':' }));
        openBox.appendChild(h('ul', {}, KS.openLines(answer.open).map(function (l) { return h('li', { text: l }); })));
      })
      .catch(function (err) {
        if (mine === asked) { openBox.textContent = 'What is still open could not be read: ' + err.message; }
      });
  }

  function requestFor(scope) {
    return (state.resume_requests || []).filter(function (r) { return r.scope === scope; })[0] || null;
  }

  function describeDialog() {
    var sel = $('resume-scope');
    if (!sel) { return; }
    var request = requestFor(sel.value);
    var title = $('resume-modal-title'), note = $('resume-request-note');
    if (request && !request.yours) {
      title.textContent = 'Approve Resume';
      note.hidden = false;
      note.textContent = 'Approving request #' + request.request + ' of ' + request.requested_by + ' (asked ' +
        KS.fmtTime(request.requested_at) + ', expires ' + KS.fmtTime(request.expires_at) + '): ' +
        sel.value + ' resumes at once.' + (request.reason ? ' Their reason: ' + request.reason : '');
    } else {
      title.textContent = 'Resume Trading';
      note.hidden = !(state.resume_approvals > 1);
      note.textContent = request ? 'You asked for this resume (request #' + request.request + '): a different ' +
        'risk officer must approve it.' : 'Two approvals are required: this asks for the resume, and a different ' +
        'risk officer approves it within the request\'s time.';
    }
    showOpen(sel.value);
  }

  KS.renderRequests = function () {
    if (!box) { return; }
    var section = $('requests-section');
    var now = KS.serverNow();
    var requests = (state.resume_requests || []).filter(function (r) { return Date.parse(r.expires_at) > now; });
    section.hidden = !requests.length && !(state.resume_approvals > 1);
    box.textContent = '';
    if (!requests.length) {
      box.appendChild(h('p', { className: 'help', text: 'No resume request is waiting.' }));
      return;
    }
    var rows = requests.map(function (r) {
      var action;
      if (r.yours) {
        action = h('span', { className: 'help', text: 'waiting for a second risk officer' });
      } else if (KS.canDeactivate) {
        action = h('button', { type: 'button', className: 'risk-btn risk-btn-resume', 'data-approve': r.scope,
          text: 'Approve' });
        action.addEventListener('click', function () { KS.openResume(r.scope); });
      } else {
        action = h('span', { className: 'help', text: 'a risk officer approves' });
      }
      return h('tr', { 'data-request': String(r.request) }, [
        h('td', { text: '#' + r.request }), h('td', { text: r.scope }), h('td', {}, [KS.badge(r.level)]),
        h('td', { text: r.requested_by }), h('td', { text: KS.fmtTime(r.requested_at) }),
        h('td', { text: KS.fmtTime(r.expires_at) }), h('td', { className: 'reason', text: r.reason || '' }),
        h('td', {}, [action]),
      ]);
    });
    box.appendChild(h('div', { className: 'risk-scroll' }, [h('table', { className: 'risk-table', id: 'requests-table' }, [
      h('thead', {}, [h('tr', {}, ['#', 'Scope', 'Level', 'Asked by', 'Asked (UTC)', 'Expires (UTC)', 'Reason', '']
        .map(function (t) { return h('th', { text: t }); }))]),
      h('tbody', {}, rows),
    ])]));
  };

  // The Resume dialog says whether it asks or approves, and what is still open.
  var openResume = KS.openResume;
  KS.openResume = function (scope) {
    openResume(scope);
    describeDialog();
  };
  if ($('resume-scope')) { $('resume-scope').addEventListener('change', describeDialog); }

  // A request, an approval or an expiry changes the list: re-read the page's state.
  KS.afterEvent = function (e) {
    var waiting = (state.resume_requests || []).length;
    if (e.action === 'resume_request' || (e.action === 'deactivate' && waiting)) { KS.resync(); }
  };
  var renderAll = KS.renderAll;
  KS.renderAll = function () { renderAll(); KS.renderRequests(); };
  KS.renderRequests();
}());
