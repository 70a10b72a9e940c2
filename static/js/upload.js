// Uploads: drag and drop or the file picker, several files at once, each with its own
// progress bar and its own errors. Uploads start as soon as files are chosen, one at a time
// in the order picked (so the tasks queue in that order), and each row then follows its task
// live to completion.
import { api, badge, csrfToken, el, formatBytes, live, setupChrome, TASK_ERRORS } from './lib.js';

setupChrome();

const form = document.getElementById('upload-form');
const input = document.getElementById('files');
const drop = document.getElementById('drop');
const queue = document.getElementById('queue');
const after = document.getElementById('after');
const maxBytes = Number(form.dataset.maxBytes);
const EXTENSIONS = ['png', 'jpg', 'jpeg', 'tif', 'tiff', 'webp', 'bmp', 'pdf'];
const PARALLEL = 1;
/** Rows of uploaded files by task id, updated by the live connection. */
const following = new Map();

// Options are folded on a phone, where choosing files comes first; open on wider screens.
if (window.matchMedia('(min-width: 40rem)').matches) document.getElementById('options-box').open = true;
let active = 0;
const waiting = [];

document.getElementById('max-size').textContent = formatBytes(maxBytes);

function options() {
  const formats = [...form.querySelectorAll('input[name=formats]:checked')].map((i) => i.value);
  return {
    engine: form.engine.value,
    formats: formats.join(','),
    ocr: form.querySelector('input[name=ocr]:checked').value,
    lang: form.lang.value,
    retention: form.retention.value,
    password: form.password.value,
  };
}

/** The row of one file: name, size, progress bar, and what happened. */
function item(file) {
  const bar = el('progress', { max: 100, value: 0, 'aria-label': `Upload of ${file.name}` });
  const status = el('span', { class: 'upload-status', role: 'status' }, 'Waiting…');
  const node = el('li', { class: 'upload', 'data-state': 'waiting' },
    el('span', { class: 'filename' }, file.name), el('span', { class: 'muted small' }, formatBytes(file.size)),
    bar, status);
  queue.append(node);
  return { node, bar, status };
}

function fail(row, message) {
  row.node.dataset.state = 'error';
  row.bar.hidden = true;
  row.status.className = 'upload-status error';
  row.status.textContent = message;
}

/** Checks done here too, so the person hears at once and nothing is sent in vain. */
function precheck(file) {
  const extension = file.name.split('.').pop().toLowerCase();
  if (!EXTENSIONS.includes(extension)) return 'Not a supported type: use PNG, JPEG, TIFF, WebP, BMP or PDF.';
  if (file.size === 0) return 'The file is empty.';
  if (file.size > maxBytes) return `Too large: ${formatBytes(file.size)}, the limit is ${formatBytes(maxBytes)}.`;
  return null;
}

function send(file, row, opts) {
  active++;
  row.node.dataset.state = 'uploading';
  row.status.textContent = 'Uploading…';
  const data = new FormData();
  data.append('engine', opts.engine);
  if (opts.formats) data.append('formats', opts.formats);
  data.append('ocr', opts.ocr);
  if (opts.lang) data.append('lang', opts.lang);
  if (opts.retention) data.append('retention_days', opts.retention);
  if (opts.password) data.append('password', opts.password);
  data.append('file', file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open('POST', '/api/tasks');
  xhr.setRequestHeader('X-CSRF-Token', csrfToken());
  xhr.setRequestHeader('Accept', 'application/json');
  xhr.upload.addEventListener('progress', (event) => {
    if (event.lengthComputable) {
      const percent = Math.round((event.loaded / event.total) * 100);
      row.bar.value = percent;
      row.status.textContent = `Uploading… ${percent}%`;
    }
  });
  xhr.addEventListener('load', () => {
    let data = null;
    try { data = JSON.parse(xhr.responseText); } catch { /* reported below */ }
    if (xhr.status === 202 || xhr.status === 200) {
      row.node.dataset.state = 'done';
      row.bar.value = 100;
      row.bar.hidden = true;
      row.node.dataset.task = data.id;
      following.set(data.id, row);
      showTask(row, data);
      if (data.duplicate_of) {
        row.node.append(el('p', { class: 'upload-note' }, 'You uploaded this file before: ',
          el('a', { href: `/tasks/${data.duplicate_of}` }, 'see the earlier task'), '.'));
      }
      after.hidden = false;
    } else if (xhr.status === 401) {
      fail(row, 'Your session ended. Sign in again, then upload this file again.');
    } else {
      fail(row, data?.error?.message ?? `The server answered ${xhr.status}.`);
    }
    finish();
  });
  xhr.addEventListener('error', () => { fail(row, 'The upload was interrupted. Check your connection and try again.'); finish(); });
  xhr.send(data);
}

/** The row's line for its task: status, pages, and where to go next. */
function showTask(row, task) {
  const parts = [badge(task.status)];
  if (task.status === 'processing' && task.pages_total) parts.push(`page ${task.pages_done} of ${task.pages_total}`);
  if (task.status === 'queued') parts.push('waiting for a worker');
  if (task.status === 'completed') parts.push(el('a', { href: `/tasks/${task.id}/view` }, 'View the text'));
  if (task.error) parts.push(TASK_ERRORS[task.error.code]?.[0] ?? task.error.message);
  parts.push(el('a', { href: `/tasks/${task.id}` }, 'Details'));
  row.node.dataset.taskStatus = task.status;
  row.status.replaceChildren(...parts);
}

async function refresh(id) {
  const row = following.get(id);
  if (!row) return;
  try {
    showTask(row, await api(`/api/tasks/${id}`));
  } catch { /* the next event or reconnection tries again */ }
}

live({
  onTask: (event) => refresh(event.id),
  onConnect: () => { for (const id of following.keys()) refresh(id); },
});

function finish() {
  active--;
  const next = waiting.shift();
  if (next) send(...next);
}

function add(files) {
  const opts = options();
  if (!opts.formats) {
    const row = item({ name: 'Options', size: 0 });
    fail(row, 'Choose at least one result format above.');
    return;
  }
  for (const file of files) {
    const row = item(file);
    const problem = precheck(file);
    if (problem) { fail(row, problem); continue; }
    if (active < PARALLEL) send(file, row, opts);
    else waiting.push([file, row, opts]);
  }
}

input.addEventListener('change', () => {
  add([...input.files]);
  input.value = '';
});
for (const name of ['dragenter', 'dragover']) {
  drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add('over'); });
}
for (const name of ['dragleave', 'drop']) {
  drop.addEventListener(name, () => drop.classList.remove('over'));
}
// A file dropped beside the zone must not replace the page (and abort uploads in flight).
for (const name of ['dragover', 'drop']) {
  document.addEventListener(name, (event) => event.preventDefault());
}
drop.addEventListener('drop', (event) => {
  event.preventDefault();
  add([...event.dataTransfer.files]);
});
form.addEventListener('submit', (event) => event.preventDefault());
