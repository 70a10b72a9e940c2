// The task list: newest first, filtered by status, updated live over the WebSocket; and the
// search box, which searches the text of the results as the user types.
import { api, badge, el, live, setupChrome, timeEl, TASK_ERRORS } from './lib.js';

setupChrome();

const table = document.getElementById('tasks');
const body = table.querySelector('tbody');
const state = document.getElementById('tasks-state');
const empty = document.getElementById('empty');
const more = document.getElementById('more');
const filters = document.querySelectorAll('.filters button');
let filter = new URLSearchParams(location.search).get('status') ?? '';
let cursor = null;

function progressCell(task) {
  const total = task.pages_total;
  if (task.status === 'processing' || (task.status === 'completed' && total)) {
    const label = total ? `${task.pages_done} of ${total} pages` : `${task.pages_done} pages`;
    return el('td', { 'data-label': 'Progress', class: task.status === 'completed' ? 'progress-cell done' : 'progress-cell' },
      el('progress', { max: total || 1, value: total ? task.pages_done : 0, 'aria-label': label }),
      el('span', { class: 'muted small' }, ` ${label}`));
  }
  return el('td', { 'data-label': 'Progress', class: 'muted progress-cell idle' }, task.status === 'queued' ? 'Waiting for a worker' : '—');
}

/** Rows are ordered by id: UUIDv7, so newest first is descending id. */
function place(fresh) {
  const current = body.querySelector(`tr[data-id="${CSS.escape(fresh.dataset.id)}"]`);
  if (current) {
    // Replies can arrive out of order: never go back to an older state.
    if (current.dataset.updated > fresh.dataset.updated) return;
    current.replaceWith(fresh);
    return;
  }
  const older = [...body.rows].find((r) => r.dataset.id < fresh.dataset.id);
  if (older) older.before(fresh);
  // Older than every row shown: it belongs to a later page, unless this is the last one.
  else if (!cursor) body.append(fresh);
}

function row(task) {
  const name = el('td', { 'data-label': 'Document', class: 'filename' },
    el('a', { href: `/tasks/${task.id}` }, task.filename || 'upload'));
  if (task.error) {
    const words = TASK_ERRORS[task.error.code]?.[0] ?? task.error.message;
    name.append(el('p', { class: 'row-error' }, words));
  }
  const actions = el('td', { class: 'row-actions' });
  if (task.status === 'completed') actions.append(el('a', { class: 'button small', href: `/tasks/${task.id}/view` }, 'View'));
  // The name beside it says what it is: the picture is decorative for screen readers.
  const picture = task.thumbnail
    ? el('img', { class: 'thumb', src: `/api/tasks/${task.id}/thumbnail`, alt: '', loading: 'lazy', width: 44, height: 44 })
    : el('span', { class: 'thumb', 'aria-hidden': 'true' });
  return el('tr', { 'data-id': task.id, 'data-status': task.status, 'data-updated': task.updated_at },
    el('td', { class: 'thumb-cell' }, picture),
    name,
    el('td', { 'data-label': 'Status', class: 'status-cell' }, badge(task.status)),
    progressCell(task),
    el('td', { 'data-label': 'Uploaded', class: 'time-cell' }, timeEl(task.created_at)),
    actions);
}

function showState() {
  const count = body.rows.length;
  table.hidden = count === 0;
  empty.hidden = !(count === 0 && filter === '');
  state.hidden = count !== 0 || filter === '';
  if (count === 0 && filter !== '') state.textContent = 'No tasks with this status.';
}

async function load({ append = false } = {}) {
  if (!append) {
    cursor = null;
    state.hidden = false;
    state.textContent = 'Loading your tasks…';
  }
  const query = new URLSearchParams({ limit: '25' });
  if (filter) query.set('status', filter);
  if (append && cursor) query.set('cursor', cursor);
  try {
    const list = await api(`/api/tasks?${query}`);
    if (!append) body.replaceChildren();
    cursor = list.next_cursor;
    for (const task of list.tasks) place(row(task));
    more.hidden = !cursor;
    showState();
  } catch (e) {
    state.hidden = false;
    state.replaceChildren(`Could not load your tasks: ${e.message} `,
      el('button', { type: 'button', onclick: () => load() }, 'Try again'));
  }
}

/** An update from the WebSocket: replace the row, or add a task new to this page. */
async function update(event) {
  const existing = body.querySelector(`tr[data-id="${CSS.escape(event.id)}"]`);
  const matches = filter === '' || event.status === filter;
  if (!matches) {
    existing?.remove();
    showState();
    return;
  }
  let task;
  try {
    // The event carries the state; the name, times and formats come from the API.
    task = await api(`/api/tasks/${event.id}`);
  } catch {
    return;
  }
  place(row(task));
  showState();
}

for (const button of filters) {
  button.setAttribute('aria-pressed', String(button.dataset.status === filter));
  button.addEventListener('click', () => {
    filter = button.dataset.status;
    for (const b of filters) b.setAttribute('aria-pressed', String(b === button));
    history.replaceState(null, '', filter ? `/?status=${filter}` : '/');
    load();
  });
}
more.addEventListener('click', () => load({ append: true }));

// Search as you type: a pause of 250 ms sends the query, the last word as a prefix while it
// is being typed; only the newest answer is shown.
const searchInput = document.getElementById('search');
const searchResults = document.getElementById('search-results');
const searchState = document.getElementById('search-state');
const hitList = document.getElementById('hits');
const moreHits = document.getElementById('more-hits');
const taskList = document.getElementById('task-list');
let searchTimer = null;
let searchSeq = 0;
let searchCursor = null;

/** What is sent: the typed words, the last one as a prefix unless it is finished (a space, a quote). */
function asTyped(text) {
  const trimmed = text.trimStart();
  const last = trimmed.split(/\s+/).pop() ?? '';
  const quotes = (trimmed.match(/"/g) ?? []).length;
  if (/[\p{L}\p{N}]{2,}$/u.test(last) && !/\s$/.test(text) && quotes % 2 === 0 && !last.startsWith('-')) return `${trimmed}*`;
  return trimmed;
}

function hitItem(hit, terms) {
  const params = new URLSearchParams({ page: String(hit.page), terms: terms.join(' ') });
  const snippet = el('p', { class: 'snippet' },
    ...hit.snippet.map((s) => (s.match ? el('mark', {}, s.text) : s.text)));
  return el('li', { class: 'hit' },
    el('a', { href: `/tasks/${hit.task_id}/view?${params}` }, hit.filename || 'upload'),
    el('span', { class: 'muted small' }, ` · page ${hit.page} · `, timeEl(hit.task_created_at)),
    snippet);
}

async function runSearch({ append = false } = {}) {
  const text = searchInput.value;
  const seq = ++searchSeq;
  // The search is part of the address, so Back from a hit returns to it.
  const address = new URLSearchParams(location.search);
  if (text.trim()) address.set('q', text); else address.delete('q');
  history.replaceState(null, '', address.size ? `/?${address}` : '/');
  if (!text.trim()) {
    searchResults.hidden = true;
    taskList.hidden = false;
    return;
  }
  searchResults.hidden = false;
  taskList.hidden = true;
  const query = new URLSearchParams({ q: asTyped(text), limit: '20' });
  if (append && searchCursor) query.set('cursor', searchCursor);
  let found;
  try {
    found = await api(`/api/search?${query}`);
  } catch (e) {
    if (seq !== searchSeq) return;
    // A search with nothing to find yet (only punctuation, only exclusions) says how to go on.
    searchState.textContent = e.code === 'invalid_request' ? e.message : `Could not search: ${e.message}`;
    if (!append) hitList.replaceChildren();
    moreHits.hidden = true;
    return;
  }
  if (seq !== searchSeq) return;
  if (!append) hitList.replaceChildren();
  hitList.append(...found.hits.map((hit) => hitItem(hit, found.terms)));
  searchCursor = found.next_cursor;
  moreHits.hidden = !searchCursor;
  const count = hitList.children.length;
  searchState.textContent = count === 0
    ? 'No page of your documents has these words.'
    : `${count}${searchCursor ? '+' : ''} matching ${count === 1 ? 'page' : 'pages'}`;
}

searchInput.addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(runSearch, 250);
});
document.getElementById('search-form').addEventListener('submit', (event) => {
  event.preventDefault();
  clearTimeout(searchTimer);
  runSearch();
});
moreHits.addEventListener('click', () => runSearch({ append: true }));
const initialSearch = new URLSearchParams(location.search).get('q');
if (initialSearch) {
  searchInput.value = initialSearch;
  runSearch();
}

load();
// Each (re)connection re-reads the list: events sent while offline are not replayed.
let connections = 0;
live({ onTask: update, onConnect: () => { if (connections++ > 0) load(); } });
