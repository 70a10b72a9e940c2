// Every account's tasks: filters, keyset pages, retry and cancel per task, live status, and a
// bulk action on everything the filters match after a dry run says how many that is.
import { api, badge, el, live, setupChrome, timeEl, toast } from './lib.js';

setupChrome();

const form = document.getElementById('filters');
const table = document.getElementById('tasks');
const body = table.querySelector('tbody');
const state = document.getElementById('tasks-state');
const more = document.getElementById('more');
const dialog = document.getElementById('confirm-bulk');
const FIELDS = ['status', 'user', 'filename', 'error', 'id'];
let cursor = null;

/** The filters as the API names them; empty fields left out. */
function filters() {
  const filter = {};
  for (const name of FIELDS) {
    const value = form.elements[name].value.trim();
    if (value) filter[name] = value;
  }
  return filter;
}

function row(task) {
  const actions = el('td', { class: 'row-actions' });
  if (['failed', 'cancelled'].includes(task.status)) actions.append(el('button', { type: 'button', class: 'small', 'data-retry': task.id }, 'Retry'));
  if (['queued', 'processing'].includes(task.status)) actions.append(el('button', { type: 'button', class: 'small', 'data-cancel': task.id }, 'Cancel'));
  const name = el('td', { class: 'filename' }, el('a', { href: `/admin/tasks/${task.id}` }, task.filename), el('br'), el('span', { class: 'mono muted small' }, task.id));
  if (task.error) name.append(el('p', { class: 'row-error' }, `${task.error.code}: ${task.error.message}`));
  return el('tr', { 'data-id': task.id, 'data-status': task.status },
    name,
    el('td', {}, task.owner_email),
    el('td', {}, badge(task.status), task.pages_total ? el('span', { class: 'muted small' }, ` ${task.pages_done}/${task.pages_total}`) : null),
    el('td', {}, timeEl(task.created_at, { seconds: true })),
    el('td', { class: 'mono small' }, task.worker ?? '—'),
    actions);
}

async function load({ append = false } = {}) {
  const query = new URLSearchParams({ ...filters(), order: form.elements.order.value, limit: '50' });
  if (append && cursor) query.set('cursor', cursor);
  state.hidden = false;
  state.textContent = 'Loading…';
  try {
    const list = await api(`/api/admin/tasks?${query}`);
    if (!append) body.replaceChildren();
    body.append(...list.tasks.map(row));
    cursor = list.next_cursor;
    more.hidden = !cursor;
    table.hidden = body.rows.length === 0;
    state.hidden = body.rows.length !== 0;
    state.textContent = 'No task matches these filters.';
  } catch (e) {
    state.textContent = `Could not load the tasks: ${e.message}`;
  }
}

/** A task changed: show its new state where it is listed. */
async function update(event) {
  const current = body.querySelector(`tr[data-id="${CSS.escape(event.id)}"]`);
  if (!current) return;
  try {
    const list = await api(`/api/admin/tasks?id=${encodeURIComponent(event.id)}&limit=1`);
    if (list.tasks[0]) current.replaceWith(row(list.tasks[0]));
  } catch { /* the next event or a reload shows it */ }
}

form.addEventListener('submit', (event) => { event.preventDefault(); load(); });
more.addEventListener('click', () => load({ append: true }));
body.addEventListener('click', async (event) => {
  const retry = event.target.closest('[data-retry]')?.dataset.retry;
  const cancel = event.target.closest('[data-cancel]')?.dataset.cancel;
  const id = retry ?? cancel;
  if (!id) return;
  event.target.disabled = true;
  try {
    await api(`/api/admin/tasks/${id}/${retry ? 'retry' : 'cancel'}`, { method: 'POST' });
    toast(retry ? 'Queued again.' : 'Cancelled.');
    update({ id });
  } catch (e) {
    toast(e.message);
    event.target.disabled = false;
  }
});

const VERBS = { retry: 'retry', cancel: 'cancel', delete: 'delete' };
document.getElementById('bulk-run').addEventListener('click', async () => {
  const action = document.getElementById('bulk-action').value;
  const filter = filters();
  try {
    const dry = await api('/api/admin/tasks/bulk', { method: 'POST', json: { filter, action, dry_run: true } });
    const what = Object.keys(filter).length ? 'matching the filters' : 'of every account — no filter is set';
    document.getElementById('confirm-bulk-text').textContent =
      `This will ${VERBS[action]} ${dry.matched.toLocaleString()} task${dry.matched === 1 ? '' : 's'} ${what}.`;
    dialog.dataset.action = action;
    dialog.returnValue = '';
    dialog.showModal();
  } catch (e) {
    toast(e.message);
  }
});
dialog.addEventListener('close', async () => {
  if (dialog.returnValue !== 'go') return;
  try {
    const done = await api('/api/admin/tasks/bulk', { method: 'POST', json: { filter: filters(), action: dialog.dataset.action } });
    toast(`${done.matched} matched, ${done.changed} changed.`);
  } catch (e) {
    toast(e.message);
  }
  load();
});

load();
live({ onTask: update, onConnect: () => {}, everyone: true });
