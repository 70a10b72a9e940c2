// One task: status, per-page progress, timeline with durations, details, errors in plain
// words, downloads, cancel, retry and delete. Updated live.
import { api, badge, downloadLinks, el, formatBytes, formatDuration, FORMAT_LABELS, island, live, RETRY_CANNOT_HELP, setupChrome, STATUS_LABELS, TASK_ERRORS, timeEl, toast } from './lib.js';

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

  renderTimes();
  renderDetails();

  document.getElementById('downloads').replaceChildren(...(task.status === 'completed' ? downloadLinks(task) : []));
  document.getElementById('view').hidden = task.status !== 'completed';
  document.getElementById('cancel').hidden = !['queued', 'processing'].includes(task.status);
  document.getElementById('retry').hidden = !['failed', 'cancelled'].includes(task.status)
    || RETRY_CANNOT_HELP.has(task.error?.code);
}

const ms = (iso) => new Date(iso).getTime();

/** The timeline, with how long the task waited and ran (still counting while it does). */
function renderTimes() {
  const now = Date.now();
  const steps = [['Uploaded', task.created_at, null], ['Started', task.started_at,
    task.started_at ? `queued for ${formatDuration(ms(task.started_at) - ms(task.created_at))}`
      : task.status === 'queued' ? `queued for ${formatDuration(now - ms(task.created_at))} so far` : null]];
  if (task.finished_at) {
    const ran = task.started_at ? `processing took ${formatDuration(ms(task.finished_at) - ms(task.started_at))}` : null;
    steps.push([STATUS_LABELS[task.status] ?? 'Finished', task.finished_at, ran]);
  } else if (task.status === 'processing') {
    steps.push(['Recognising…', null, task.started_at ? `processing for ${formatDuration(now - ms(task.started_at))}` : null]);
  }
  const timeline = document.getElementById('timeline');
  timeline.replaceChildren(...steps.map(([what, at, took]) =>
    el('li', { class: at ? 'reached' : 'pending' }, el('span', { class: 'step' }, what), ' ',
      at ? timeEl(at, { seconds: true }) : el('span', { class: 'muted' }, 'not yet'),
      took ? el('span', { class: 'muted duration' }, ` · ${took}`) : null)));
  if (task.attempts > 1) timeline.append(el('li', { class: 'muted' }, `Attempts: ${task.attempts}`));
}

const POLICIES = { auto: 'Text already in PDFs used, other pages recognised', force: 'Every page recognised', skip: 'Text already in PDFs only' };
const TYPES = { 'application/pdf': 'PDF', 'image/png': 'PNG image', 'image/jpeg': 'JPEG image', 'image/tiff': 'TIFF image', 'image/webp': 'WebP image', 'image/bmp': 'BMP image' };

function renderDetails() {
  const pages = task.pages_total === null ? 'counted when the document is opened'
    : `${task.pages_total}${task.text_layer_pages ? `, ${task.text_layer_pages} read from the PDF's own text` : ''}`;
  const facts = [
    ['File', `${TYPES[task.content_type] ?? task.content_type}, ${formatBytes(task.file_size)}`],
    ['Pages', pages],
    ['Engine', task.engine],
    ['Text in PDFs', POLICIES[task.ocr] ?? task.ocr],
    ['Script', task.lang ?? "this server's default"],
    ['Formats asked for', task.requested_formats.map((f) => FORMAT_LABELS[f] ?? f).join(', ')],
  ];
  if (task.mean_confidence !== null && task.mean_confidence !== undefined) {
    facts.push(['Mean confidence', `${Math.round(task.mean_confidence * 100)}%`]);
  }
  if (task.expires_at) {
    facts.push(['Deleted automatically', timeEl(task.expires_at)]);
  } else if (task.retention_days === 0 || task.finished_at) {
    facts.push(['Deleted automatically', 'never: kept until you delete it']);
  }
  document.getElementById('details').replaceChildren(...facts.flatMap(([name, value]) =>
    [el('dt', {}, name), el('dd', { 'data-fact': name }, value)]));
  const thumbnail = document.getElementById('thumbnail');
  if (task.thumbnail && !thumbnail.src) {
    thumbnail.alt = `First page of ${task.filename}`;
    thumbnail.src = `/api/tasks/${task.id}/thumbnail`;
  }
}
document.getElementById('thumbnail').addEventListener('load', (event) => { event.target.hidden = false; });
setInterval(() => { if (!task.finished_at) renderTimes(); }, 1000);

document.getElementById('cancel').addEventListener('click', async (event) => {
  event.target.disabled = true;
  try {
    task = await api(`/api/tasks/${task.id}/cancel`, { method: 'POST' });
    render();
    toast('Cancelled. Retry runs it again.');
  } catch (e) {
    toast(`Could not cancel: ${e.message}`);
  } finally {
    event.target.disabled = false;
  }
});

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

/** Consecutive page steps shown as their latest: a long document has one per page. */
function collapsePages(steps) {
  return steps.filter((step, i) => step.kind !== 'page' || steps[i + 1]?.kind !== 'page');
}

async function renderHistory() {
  try {
    const { steps } = await api(`/api/tasks/${task.id}/timeline`);
    document.getElementById('history').replaceChildren(...collapsePages(steps).map((step) =>
      el('li', { 'data-kind': step.kind }, timeEl(step.at, { seconds: true }), ' ', step.message)));
  } catch {
    // The progress above says the same in short; the history comes with the next event.
  }
}

render();
renderHistory();
async function refresh() {
  try {
    task = await api(`/api/tasks/${task.id}`);
    render();
    renderHistory();
  } catch (e) {
    if (e.code === 'task_not_found') location.assign('/');
  }
}
live({
  onTask: (event) => { if (event.id === task.id) refresh(); },
  onConnect: refresh,
});
