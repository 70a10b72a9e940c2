// Shared by every page: API calls with the CSRF token, small DOM helpers, local times and the
// live connection to /ws.

/** The session's CSRF token, read each time: changing the password renews it. */
export function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? '';
}

/** An API error with its stable code (see /api/docs). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the JSON API; throws ApiError with the server's code and message on failure. */
export async function api(path, { method = 'GET', json, body, headers = {}, retry = true } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, credentials: 'same-origin' };
  if (method !== 'GET' && csrfToken()) init.headers['X-CSRF-Token'] = csrfToken();
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'offline', 'The server cannot be reached. Check your connection and try again.');
  }
  if (response.status === 403 && retry) {
    // The session was renewed in another tab (a password change): take its token, try again.
    const failed = await response.clone().json().catch(() => null);
    if (failed?.error?.code === 'csrf_failed' && await renewCsrf()) {
      return api(path, { method, json, body, headers, retry: false });
    }
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: handled below */ }
  if (!response.ok) {
    const error = data?.error;
    if (response.status === 401 && !path.startsWith('/api/auth/')) {
      location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    }
    throw new ApiError(response.status, error?.code ?? 'http_' + response.status,
      error?.message ?? `The server answered ${response.status}.`);
  }
  return data;
}

/** Fetches the session's current CSRF token into the page; false if signed out. */
async function renewCsrf() {
  const response = await fetch('/api/auth/me', { credentials: 'same-origin' }).catch(() => null);
  const me = response?.ok ? await response.json() : null;
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (!me?.csrf_token || !meta) return false;
  meta.content = me.csrf_token;
  return true;
}

/** Creates an element: el('a', {href: '/'}, 'text', child). Attributes starting with `on` are listeners. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  node.append(...children.filter((c) => c !== undefined && c !== null && c !== false));
  return node;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const secondsFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** An ISO time in the user's locale and time zone, as a <time> element (`seconds`: to the second). */
export function timeEl(iso, { seconds = false } = {}) {
  if (!iso) return el('span', { class: 'muted' }, '—');
  return el('time', { datetime: iso, title: iso }, (seconds ? secondsFormat : timeFormat).format(new Date(iso)));
}

/** Sizes in binary units, as limits are configured: "200 MiB". */
export function formatBytes(n) {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : Number(n.toFixed(1))} ${units[i]}`;
}

/** A duration in milliseconds in words: "45 s", "2 min 5 s", "1 h 3 min". */
export function formatDuration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Shows the message in an error element (or hides it with no message). */
export function showError(node, message) {
  node.textContent = message ?? '';
  node.hidden = !message;
}

let toastTimer;
export function toast(message) {
  const node = document.getElementById('toast');
  if (!node) return;
  node.textContent = message;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, 4000);
}

/** Copies text; falls back to selecting it where the clipboard API is not allowed. */
export async function copyText(text, fallbackNode) {
  try {
    await navigator.clipboard.writeText(text);
    toast('Copied.');
  } catch {
    if (fallbackNode) {
      const range = document.createRange();
      range.selectNodeContents(fallbackNode);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      toast('Selected: press Ctrl+C (⌘C) to copy.');
    }
  }
}

export const STATUS_LABELS = {
  queued: 'Queued', processing: 'Processing', completed: 'Completed', failed: 'Failed', cancelled: 'Cancelled',
};

/** A status badge; `data-status` carries the machine value. */
export function badge(status) {
  return el('span', { class: 'badge', 'data-status': status }, STATUS_LABELS[status] ?? status);
}

export const FORMAT_LABELS = { txt: 'Text', html: 'hOCR', json: 'JSON', pdf: 'PDF', xml: 'ALTO' };

/** Download links: every result format (those not asked for are made on first download), then the original upload. */
export function downloadLinks(task) {
  const results = task.formats.map((format) => el('a', {
    class: 'button', href: `/api/tasks/${task.id}/result?format=${format}`, download: true,
    'data-format': format,
  }, `Download ${FORMAT_LABELS[format] ?? format}`));
  return [...results, el('a', { class: 'button', href: `/api/tasks/${task.id}/file`, download: true, 'data-format': 'original' }, 'Original file')];
}

/**
 * The live connection: calls onTask(task) for each task.updated event of the signed-in user
 * (of every user with `everyone`, for operators),
 * and onConnect() each time the connection opens (events may have been missed before).
 * Reconnects with exponential backoff and jitter, shows in the header while it is offline,
 * and goes to the login page once the session has ended.
 */
let leaving = false;
window.addEventListener('pagehide', () => { leaving = true; });

export function live({ onTask, onConnect, onLog, everyone = false }) {
  const indicator = document.getElementById('live');
  // Operators hear of every user's tasks; the pages show only the viewer's own, but the
  // console (`everyone`) shows them all.
  const me = everyone ? null : document.querySelector('meta[name="user-id"]')?.content;
  let delay = 1000;
  let offlineSince = null;
  const setOffline = (offline) => {
    if (!indicator) return;
    indicator.hidden = !offline;
    indicator.textContent = offline ? 'Offline: reconnecting…' : '';
  };
  const connect = () => {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/ws`);
    socket.addEventListener('open', () => {
      delay = 1000;
      offlineSince = null;
      setOffline(false);
      document.body.dataset.live = 'connected';
      // Operators: new log records too (the console's live tail).
      if (onLog) socket.send(JSON.stringify({ subscribe: 'logs' }));
      onConnect?.();
    });
    socket.addEventListener('message', (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message.type === 'task.updated' && (!me || message.task.user_id === me)) onTask?.(message.task);
      if (message.type === 'log') onLog?.(message.record);
    });
    socket.addEventListener('close', async () => {
      if (leaving) return;
      document.body.dataset.live = 'offline';
      // Closed because the session ended (signed out elsewhere, password changed)?
      const response = await fetch('/api/auth/me', { credentials: 'same-origin' }).catch(() => null);
      if (response?.status === 401) {
        location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
        return;
      }
      offlineSince ??= Date.now();
      // A short blip is not worth a banner.
      setTimeout(() => { if (offlineSince) setOffline(true); }, 1500);
      const wait = delay * (0.5 + Math.random());
      delay = Math.min(delay * 2, 30000);
      setTimeout(connect, wait);
    });
  };
  window.addEventListener('online', () => { delay = 1000; });
  connect();
}

/** The header's sign-out button. */
export function setupChrome() {
  document.getElementById('logout')?.addEventListener('click', async () => {
    leaving = true;
    try {
      await api('/api/auth/logout', { method: 'POST' });
    } catch (e) {
      if (e.status !== 401) { toast(e.message); return; }
    }
    location.assign('/login');
  });
}

/** Reads the page's JSON data island. */
export function island(id) {
  return JSON.parse(document.getElementById(id).textContent);
}

/** Plain words for the stable error codes a task can fail with. */
export const TASK_ERRORS = {
  empty_file: ['The file is empty', 'Upload the document again; the file that arrived had no content.'],
  unsupported_type: ['This file type is not supported', 'Upload a PNG, JPEG, TIFF, WebP, BMP or PDF file.'],
  undecodable: ['The file could not be read', 'It may be damaged or only partly uploaded. Export or scan it again.'],
  too_many_pixels: ['A page is too large', 'Scan at a lower resolution (300 DPI is plenty) and upload again.'],
  too_many_pages: ['The document has too many pages', 'Split it into smaller documents.'],
  encrypted: ['The PDF is password-protected', 'Save a copy without a password and upload that.'],
  page_timeout: ['A page took too long', 'The page may be unusually large or complex. Retry, or split the document.'],
  engine_error: ['The OCR engine failed', 'Retry; if it fails again, tell your administrator.'],
  engine_unavailable: ['This engine is not available', 'Upload the document again with the engine this server offers.'],
  render_failed: ['The results could not be written', 'Retry; if it fails again, ask for other formats than PDF.'],
  internal: ['Something went wrong inside ocrd', 'Retry; the error was logged for your administrator.'],
  poison: ['The task kept failing', 'It was stopped after several attempts. Retry later or tell your administrator.'],
  database_unavailable: ['The database was unavailable', 'Retry in a few minutes.'],
  storage_unavailable: ['File storage was unavailable', 'Retry in a few minutes.'],
  cancelled: ['The task was cancelled', 'Retry to run it again.'],
  bad_options: ['The task\'s options could not be read', 'Upload the document again.'],
  source_missing: ['The uploaded file is gone from storage', 'Upload the document again.'],
  io: ['A file could not be read or written on the worker', 'Retry; if it fails again, tell your administrator.'],
  quota_exceeded: ['Over your monthly page quota', 'The document has more pages than your quota has left this month. See Account for your use; retry next month or ask your administrator.'],
};

/** Failures of the file itself: running the same file again ends the same way, so no Retry. */
export const RETRY_CANNOT_HELP = new Set([
  'empty_file', 'unsupported_type', 'undecodable', 'too_many_pixels', 'too_many_pages', 'encrypted',
  'engine_unavailable', 'bad_options', 'source_missing',
]);
