/* The Risk page, part 4 of 4: the typed KILL / RESUME confirmations, and the start.
 * A refused request shows the server's own message; an answer that changed nothing
 * ("already at halt") is information, not success; warnings are shown with either. */
(function () {
  'use strict';

  var KS = window.KS, $ = KS.$, h = KS.h, config = KS.config;
  KS.ownSeqs = {};

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
    KS.updateSubmitStates();
  }

  KS.fillResumeScopes = function (preferred) {
    var sel = $('resume-scope');
    if (!sel) { return; }
    var current = preferred || sel.value;
    sel.textContent = '';
    KS.activeScopes().forEach(function (s) {
      sel.appendChild(h('option', { value: s.scope, text: s.scope + ' — ' + s.level }));
    });
    if (current && KS.activeScopes().some(function (s) { return s.scope === current; })) { sel.value = current; }
  };

  KS.openResume = function (scope) {
    KS.fillResumeScopes(scope);
    openModal('resume-modal');
    KS.tick();
    $('resume-confirm').focus();
  };

  KS.updateSubmitStates = function () {
    if (KS.busy) { return; }  // a request is on its way: no second one
    if ($('kill-submit')) {
      $('kill-submit').disabled = !($('kill-confirm').value === config.kill_word && $('kill-reason').value.trim());
    }
    if ($('resume-submit')) {
      // Disabled during the chosen scope's own cooldown: the server would refuse it.
      var chosen = KS.scope($('resume-scope').value);
      var cooling = KS.remaining(chosen) > 0;
      $('resume-submit').disabled = !($('resume-confirm').value === config.resume_word && chosen) || cooling;
      $('resume-submit').textContent = cooling ? 'Confirm Resume (cooldown ' + KS.fmtDuration(KS.remaining(chosen)) + ')'
        : 'Confirm Resume';
    }
  };

  function submitForm(form, errorBox, modalId) {
    var data = new FormData(form);
    var submit = form.querySelector('button[type=submit]');
    submit.disabled = true;
    KS.busy = true;
    fetch(form.action, {
      method: 'POST', body: data, credentials: 'same-origin',
      headers: { Accept: 'application/json', 'X-Requested-With': 'XMLHttpRequest' },
    }).then(function (r) {
      return r.json().catch(function () { return { ok: false, error: 'The server answered HTTP ' + r.status + '.' }; });
    }).then(function (answer) {
      KS.busy = false;
      if (answer.ok) {
        if (answer.seq) { KS.ownSeqs[answer.seq] = true; }
        closeModal(modalId);
        var warnings = answer.warnings || [];
        if (answer.pending_audit) {
          warnings = ['The database is unavailable: applied in Redis (every trading process obeys); the audit ' +
                      'event is written when the database is back.'].concat(warnings);
        }
        var kind = warnings.length ? 'warning' : (answer.changed ? 'ok' : 'info');
        if (answer.open && KS.openLines) {  // a resume's answer: what trading meets (risk-resume.js)
          warnings = warnings.concat(['Still open in ' + answer.scope + ': ' + KS.openLines(answer.open).join('; ')]);
        }
        KS.flash(answer.message, kind, warnings);
        if (answer.requested && KS.resync) { KS.resync(); }  // the new request shows in its panel
        if (!KS.page.connected) { KS.resync(); }
      } else {
        errorBox.hidden = false;
        errorBox.textContent = answer.error || answer.message;
        KS.flash(answer.error || answer.message, 'error');
        KS.updateSubmitStates();
      }
    }).catch(function (err) {
      KS.busy = false;
      errorBox.hidden = false;
      errorBox.textContent = 'The request did not reach the server: ' + err.message +
        '. On the server, `.venv/bin/python manage.py killswitch activate` still works.';
      KS.updateSubmitStates();
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
    if (KS.canActivate && $('kill-button')) {
      $('kill-button').addEventListener('click', function () { openModal('kill-modal'); $('kill-reason').focus(); });
      ['kill-confirm', 'kill-reason'].forEach(function (id) { $(id).addEventListener('input', KS.updateSubmitStates); });
      $('kill-form').addEventListener('submit', function (ev) {
        ev.preventDefault();
        if ($('kill-confirm').value !== config.kill_word) { return; }
        submitForm($('kill-form'), $('kill-error'), 'kill-modal');
      });
    }
    if (KS.canDeactivate && $('resume-button')) {
      $('resume-button').addEventListener('click', function () {
        var button = $('resume-button');
        if (!button.disabled) { KS.openResume(button.dataset.scope); }
      });
      $('resume-confirm').addEventListener('input', KS.updateSubmitStates);
      $('resume-scope').addEventListener('change', function () { KS.tick(); });
      $('resume-form').addEventListener('submit', function (ev) {
        ev.preventDefault();
        if ($('resume-confirm').value !== config.resume_word || $('resume-submit').disabled) { return; }
        submitForm($('resume-form'), $('resume-error'), 'resume-modal');
      });
    }
  }

  KS.renderAll();
  wire();
  setInterval(KS.tick, 1000);
  KS.startLive();
})();
