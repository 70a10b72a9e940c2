// One task: status, per-page progress, timeline, errors in plain words, downloads, retry and
// delete. Updated live.
import { api, badge, downloadLinks, el, island, live, RETRY_CANNOT_HELP, setupChrome, STATUS_LABELS, TASK_ERRORS, timeEl, toast } from './lib.js';

setupChrome();

let task = island('task-data');

function render() {
  const status = document.getElementById('status');
  status.replaceWith(Object.assign(badge(task.status), { id: 'status' }));

  const total = task.pages_total;
  const label = document.getElementById('pages-label');
  const bar = document.getElementById('pages-bar');
  const pages = document.getElementById('pages');
  if (total) {
    label.textContent = `${task.pages_done} of ${total} page${total === 1 ? '' : 's'} recognised`;
    bar.max = total;
    bar.value = task.pages_done;
    bar.hidden = false;
    const failed = new Set(task.warnings.map((w) => w.page - 1));
    pages.replaceChildren(...Array.from({ length: total }, (_, i) => {
      const done = i < task.pages_done;
      const current = !done && i === task.pages_done && task.status === 'processing';
      const state = failed.has(i) ? 'failed' : done ? 'done' : current ? 'current' : 'pending';
      const words = { failed: 'could not be read', done: 'done', current: 'in progress', pending: 'waiting' }[state];
      return el('li', { class: `page-chip ${state}`, title: `Page ${i + 1}: ${words}` },
        el('span', { 'aria-hidden': 'true' }, String(i + 1)),
        el('span', { class: 'visually-hidden' }, `Page ${i + 1}: ${words}`));
    }));
  } else {
    label.textContent = task.status === 'queued' ? 'Waiting for a worker to pick it up.' : 'Pages are counted once the document is opened.';
    bar.hidden = task.status !== 'processing';
    bar.removeAttribute('value');
    pages.replaceChildren();
  }

  const error = document.getElementById('error');
  if (task.error) {
    const [title, help] = TASK_ERRORS[task.error.code] ?? ['The task failed', 'Retry, or tell your administrator.'];
    document.getElementById('error-title').textContent = title;
    document.getElementById('error-help').textContent = help;
    document.getElementById('error-code').textContent = task.error.code;
    document.getElementById('error-message').textContent = task.error.message;
  }
  error.hidden = !task.error;

  document.getElementById('warning-list').replaceChildren(...task.warnings.map((w) => {
    const [title] = TASK_ERRORS[w.code] ?? ['The page could not be read'];
    return el('li', {}, el('strong', {}, `Page ${w.page}: `), `${title}. `,
      el('span', { class: 'muted' }, 'Code ', el('code', {}, w.code), `: ${w.message}`));
  }));
  document.getElementById('warnings').hidden = task.warnings.length === 0;

  const steps = [['Uploaded', task.created_at], ['Started', task.started_at]];
  if (task.finished_at) steps.push([STATUS_LABELS[task.status] ?? 'Finished', task.finished_at]);
  else if (task.status === 'processing') steps.push(['Recognising…', null]);
  document.getElementById('timeline').replaceChildren(...steps.map(([what, at]) =>
    el('li', { class: at ? 'reached' : 'pending' }, el('span', { class: 'step' }, what), ' ', at ? timeEl(at) : el('span', { class: 'muted' }, 'not yet'))));
  if (task.attempts > 1) {
    document.getElementById('timeline').append(el('li', { class: 'muted' }, `Attempts: ${task.attempts}`));
  }

  document.getElementById('downloads').replaceChildren(...downloadLinks(task));
  document.getElementById('view').hidden = task.status !== 'completed';
  document.getElementById('retry').hidden = !['failed', 'cancelled'].includes(task.status)
    || RETRY_CANNOT_HELP.has(task.error?.code);
}

document.getElementById('retry').addEventListener('click', async (event) => {
  event.target.disabled = true;
  try {
    task = await api(`/api/tasks/${task.id}/retry`, { method: 'POST' });
    render();
    toast('Queued again.');
  } catch (e) {
    toast(e.message);
  } finally {
    event.target.disabled = false;
  }
});

const dialog = document.getElementById('confirm-delete');
document.getElementById('delete').addEventListener('click', () => {
  // Escape must not repeat an earlier choice.
  dialog.returnValue = '';
  dialog.showModal();
});
dialog.addEventListener('close', async () => {
  if (dialog.returnValue !== 'delete') return;
  try {
    await api(`/api/tasks/${task.id}`, { method: 'DELETE' });
    location.assign('/');
  } catch (e) {
    toast(`Could not delete: ${e.message}`);
  }
});

render();
async function refresh() {
  try {
    task = await api(`/api/tasks/${task.id}`);
    render();
  } catch (e) {
    if (e.code === 'task_not_found') location.assign('/');
  }
}
live({
  onTask: (event) => { if (event.id === task.id) refresh(); },
  onConnect: refresh,
});
