// The audit log, newest first, a page at a time.
import { api, el, setupChrome, timeEl } from './lib.js';

setupChrome();

const table = document.getElementById('audit');
const body = table.querySelector('tbody');
const state = document.getElementById('audit-state');
const older = document.getElementById('older');
let before = null;

function row(entry) {
  return el('tr', { 'data-seq': String(entry.seq), 'data-action': entry.action, 'data-outcome': entry.outcome },
    el('td', {}, String(entry.seq)),
    el('td', {}, timeEl(entry.at, { seconds: true })),
    el('td', {}, entry.actor),
    el('td', { class: 'small' }, entry.client ?? '—', entry.user_agent ? el('br') : null, entry.user_agent ? el('span', { class: 'muted' }, entry.user_agent) : null),
    el('td', { class: 'mono' }, entry.action),
    el('td', { class: 'mono small' }, entry.target ?? '—', entry.detail ? el('br') : null, entry.detail ? el('span', { class: 'muted' }, entry.detail) : null),
    el('td', {}, el('span', { class: 'badge', 'data-outcome': entry.outcome }, entry.outcome)));
}

async function load() {
  const query = new URLSearchParams({ limit: '100' });
  if (before) query.set('before', String(before));
  try {
    const page = await api(`/api/admin/audit?${query}`);
    body.append(...page.entries.map(row));
    before = page.next_before;
    older.hidden = !before;
    table.hidden = body.rows.length === 0;
    state.hidden = body.rows.length !== 0;
    state.textContent = 'Nothing has been recorded yet.';
  } catch (e) {
    state.hidden = false;
    state.textContent = `Could not load the audit log: ${e.message}`;
  }
}

older.addEventListener('click', load);
load();
