// One task as operators see it: its owner, worker, attempts and error, with every step of its
// timeline (worker, attempt, error detail), live.
import { api, badge, el, live, setupChrome, timeEl, toast } from './lib.js';

setupChrome();

const id = document.getElementById('task-heading').dataset.taskId;
const state = document.getElementById('task-state');
const retry = document.getElementById('task-retry');
const cancel = document.getElementById('task-cancel');

function render(t) {
  const facts = [
    ['Status', badge(t.status)],
    ['File', t.filename],
    ['Owner', t.owner_email],
    ['Engine', t.engine],
    ['Pages', t.pages_total === null ? `${t.pages_done} so far` : `${t.pages_done} of ${t.pages_total}`],
    ['Attempts', `${t.attempts} of ${t.max_attempts}`],
    ['Worker', t.worker ?? '—'],
    ['Priority', String(t.priority)],
    ['Created', timeEl(t.created_at, { seconds: true })],
    ['Error', t.error ? `${t.error.code}: ${t.error.message}` : '—'],
  ];
  document.getElementById('task-facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  document.getElementById('steps').replaceChildren(...t.timeline.map((s) =>
    el('tr', { 'data-kind': s.kind },
      el('td', {}, timeEl(s.at, { seconds: true })),
      el('td', { class: 'mono' }, s.kind),
      el('td', {}, s.message),
      el('td', { class: 'mono small' }, s.worker ?? '—'),
      el('td', {}, s.attempt === null ? '—' : String(s.attempt)),
      el('td', { class: 'mono small' }, s.detail ?? '—'))));
  const priority = document.getElementById('priority');
  if (document.activeElement !== priority) priority.value = String(t.priority);
  retry.hidden = !['failed', 'cancelled'].includes(t.status);
  cancel.hidden = !['queued', 'processing'].includes(t.status);
  document.getElementById('task-summary').hidden = false;
  document.getElementById('task-timeline').hidden = false;
  state.hidden = true;
}

async function load() {
  try {
    render(await api(`/api/admin/tasks/${id}`));
  } catch (e) {
    state.hidden = false;
    state.textContent = e.code === 'task_not_found' ? 'There is no task with this id.' : `Could not load the task: ${e.message}`;
  }
}

async function act(action, done) {
  try {
    await api(`/api/admin/tasks/${id}/${action}`, { method: 'POST' });
    toast(done);
    load();
  } catch (e) {
    toast(e.message);
  }
}

document.getElementById('task-priority').addEventListener('submit', async (event) => {
  event.preventDefault();
  const value = Number(document.getElementById('priority').value);
  if (!Number.isInteger(value) || value < -100 || value > 100) {
    toast('The priority is a whole number from −100 to 100.');
    return;
  }
  try {
    await api(`/api/admin/tasks/${id}/priority`, { method: 'POST', json: { priority: value } });
    toast(`Priority set to ${value}.`);
    load();
  } catch (e) {
    toast(e.message);
  }
});
retry.addEventListener('click', () => act('retry', 'Queued again.'));
cancel.addEventListener('click', () => act('cancel', 'Cancelled: it stops at its next page.'));
live({ everyone: true, onTask: (event) => { if (event.id === id) load(); }, onConnect: load });
load();
