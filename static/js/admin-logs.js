// Every process's recent log records, filtered, a page at a time, with a live tail over the
// WebSocket that applies the same filters.
import { api, el, live, setupChrome, timeEl } from './lib.js';

setupChrome();

const form = document.getElementById('log-filters');
const table = document.getElementById('logs');
const body = table.querySelector('tbody');
const state = document.getElementById('logs-state');
const older = document.getElementById('older-logs');
const liveBox = document.getElementById('l-live');
const RANK = { ERROR: 3, WARN: 2, INFO: 1 };
const SHOWN = 1000;
let before = null;

function filters() {
  const f = {};
  for (const name of ['level', 'process', 'task']) {
    const value = form.elements[name].value.trim();
    if (value) f[name] = value;
  }
  return f;
}

/** Whether a live record passes the filters, as the server applies them to the list. */
function matches(record) {
  const f = filters();
  return (!f.level || RANK[record.level] >= RANK[f.level])
    && (!f.process || record.process.includes(f.process))
    && (!f.task || record.task === f.task);
}

function row(record) {
  const extra = Object.entries(record.fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
  const task = record.task ? el('a', { href: `/admin/tasks/${record.task}`, class: 'mono small' }, ` task ${record.task.slice(0, 8)}…`) : null;
  return el('tr', { 'data-level': record.level, 'data-id': record.id },
    el('td', { class: 'small' }, timeEl(record.at, { seconds: true })),
    el('td', {}, el('span', { class: 'badge', 'data-level': record.level }, record.level)),
    el('td', { class: 'mono small' }, record.process),
    el('td', {}, record.message, task, extra ? el('br') : null, extra ? el('span', { class: 'muted small mono' }, extra) : null));
}

function show() {
  table.hidden = body.rows.length === 0;
  state.hidden = body.rows.length !== 0;
  state.textContent = 'No record matches.';
}

async function load(reset) {
  const query = new URLSearchParams({ limit: '200', ...filters() });
  if (!reset && before) query.set('before', before);
  try {
    const page = await api(`/api/admin/logs?${query}`);
    if (reset) body.replaceChildren();
    body.append(...page.records.map(row));
    before = page.next_before;
    older.hidden = !before;
    show();
  } catch (e) {
    state.hidden = false;
    state.textContent = `Could not load the logs: ${e.message}`;
  }
}

form.addEventListener('submit', (event) => { event.preventDefault(); load(true); });
older.addEventListener('click', () => load(false));
live({
  everyone: true,
  onLog: (record) => {
    if (!liveBox.checked || !matches(record) || body.querySelector(`tr[data-id="${CSS.escape(record.id)}"]`)) return;
    body.prepend(row(record));
    while (body.rows.length > SHOWN) body.lastElementChild.remove();
    show();
  },
});
load(true);
