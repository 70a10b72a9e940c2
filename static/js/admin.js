// The console's overview: health (dependencies, disks, servers), throughput charts, the queue
// (pause and resume) and every worker (state, heartbeat, tasks, pages, memory; drain and
// resume), refreshed every few seconds and on task events.
import { stackedBars } from './chart.js';
import { api, el, formatBytes, formatDuration, live, setupChrome, toast } from './lib.js';

setupChrome();

const queueState = document.getElementById('queue-state');
const pause = document.getElementById('queue-pause');
const resume = document.getElementById('queue-resume');
const table = document.getElementById('workers');
const body = table.querySelector('tbody');
const workersState = document.getElementById('workers-state');
const STATES = { running: 'Running', draining: 'Draining', lost: 'Lost', stopped: 'Stopped' };

function showQueue(queue) {
  const waiting = `${queue.queued} task${queue.queued === 1 ? '' : 's'} waiting`;
  const oldest = queue.oldest_queued_secs === null ? '' : `, the oldest for ${Math.round(queue.oldest_queued_secs)} s`;
  queueState.textContent = `${queue.paused ? 'Paused' : 'Running'}: ${waiting}${oldest}.`;
  queueState.dataset.paused = String(queue.paused);
  pause.hidden = queue.paused;
  resume.hidden = !queue.paused;
}

function workerRow(w) {
  const tasks = w.tasks.map((t) => el('a', { href: `/tasks/${t.id}`, title: t.id },
    `${t.id.slice(0, 8)}… page ${t.pages_done} of ${t.pages_total ?? '?'}`));
  const action = w.state === 'running' && !w.drain_requested
    ? el('button', { type: 'button', class: 'small', 'data-drain': w.id }, 'Drain')
    : (w.state === 'draining' || w.drain_requested) && w.state !== 'lost' && w.state !== 'stopped'
      ? el('button', { type: 'button', class: 'small', 'data-resume': w.id }, 'Resume')
      : null;
  return el('tr', { 'data-id': w.id, 'data-state': w.state },
    el('td', {}, el('span', { class: 'mono' }, w.id), el('br'), el('span', { class: 'muted small' }, `${w.host}, pid ${w.pid}, v${w.version}`)),
    el('td', {}, el('span', { class: 'badge', 'data-worker': w.state }, STATES[w.state] ?? w.state)),
    el('td', {}, `${w.engine} on ${w.devices}, ${w.concurrency} at once`),
    el('td', {}, `${Math.round(w.heartbeat_age_secs)} s ago`),
    el('td', {}, ...(tasks.length ? tasks.flatMap((t, i) => (i ? [el('br'), t] : [t])) : ['—'])),
    el('td', {}, `${w.pages_done} (${w.pages_per_sec.toFixed(2)}/s)`),
    el('td', {}, formatBytes(w.rss_bytes)),
    el('td', { class: 'row-actions' }, action));
}

const DEPENDENCIES = { database: 'Database', redis: 'Redis', storage: 'Storage', queue: 'Queue' };

function tile(title, ok, lines) {
  return el('li', { class: 'tile', 'data-ok': String(ok) },
    el('strong', {}, title), ' ', el('span', { class: 'badge', 'data-outcome': ok ? 'success' : 'failure' }, ok ? 'OK' : 'Down'),
    ...lines.filter(Boolean).map((line) => el('span', { class: 'small muted tile-line' }, line)));
}

function describe(d) {
  const x = d.detail;
  if (d.error) return [d.error];
  switch (d.name) {
    case 'database': return [`${x.backend}: ${x.server_version.split(' on ')[0]}`, `schema ${x.migration.applied} (this binary: ${x.migration.binary})`];
    case 'redis': return [`Redis ${x.version}`, `${formatBytes(x.used_memory_bytes ?? 0)}, ${x.connected_clients} clients`];
    case 'storage': return [`${x.kind}${x.sse_kms ? ', SSE-KMS' : ''}: put, get and delete`];
    case 'queue': return [`${x.waiting} waiting, ${x.pending} running${x.consumers === null ? '' : `, ${x.consumers} consumers`}`];
    default: return [];
  }
}

async function checkHealth() {
  const state = document.getElementById('health-state');
  try {
    const health = await api('/api/admin/health');
    const tiles = health.dependencies.map((d) => tile(DEPENDENCIES[d.name] ?? d.name, d.status === 'ok', [...describe(d), `${d.latency_ms.toFixed(1)} ms`]));
    for (const disk of health.disks) {
      const low = disk.free_bytes !== null && disk.total_bytes && disk.free_bytes / disk.total_bytes < 0.05;
      tiles.push(tile(`Disk: ${disk.name}`, disk.free_bytes !== null && !low, [disk.path, disk.free_bytes === null ? 'unknown' : `${formatBytes(disk.free_bytes)} free of ${formatBytes(disk.total_bytes)}`]));
    }
    for (const s of health.servers.filter((x) => x.state !== 'stopped')) {
      const up = formatDuration(Date.now() - new Date(s.started_at).getTime());
      tiles.push(tile(`Server ${s.host}:${s.pid}`, s.state === 'running', [`v${s.version}, up ${up}`, s.state === 'lost' ? `silent for ${Math.round(s.heartbeat_age_secs)} s` : null]));
    }
    document.getElementById('health').replaceChildren(...tiles);
    state.dataset.status = health.status;
    state.textContent = health.status === 'ok' ? 'Everything answers.' : 'Degraded: a dependency is down, or a worker or server is lost.';
  } catch (e) {
    state.textContent = `Could not check the health: ${e.message}`;
  }
}

async function refresh() {
  try {
    const [queue, list] = await Promise.all([api('/api/admin/queue'), api('/api/admin/workers')]);
    showQueue(queue);
    body.replaceChildren(...list.workers.map(workerRow));
    table.hidden = list.workers.length === 0;
    workersState.hidden = list.workers.length !== 0;
    workersState.textContent = 'No worker has registered yet: start one with ocrd work (or ocrd all-in-one).';
  } catch (e) {
    workersState.hidden = false;
    workersState.textContent = `Could not load the fleet: ${e.message}`;
  }
}

async function act(path, done) {
  try {
    await api(path, { method: 'POST' });
    toast(done);
  } catch (e) {
    toast(e.message);
  }
  refresh();
}

pause.addEventListener('click', () => act('/api/admin/queue/pause', 'The queue is paused.'));
resume.addEventListener('click', () => act('/api/admin/queue/resume', 'The queue runs again.'));
body.addEventListener('click', (event) => {
  const drain = event.target.closest('[data-drain]')?.dataset.drain;
  const again = event.target.closest('[data-resume]')?.dataset.resume;
  if (drain) act(`/api/admin/workers/${encodeURIComponent(drain)}/drain`, 'The worker drains: it finishes its tasks and takes no new one.');
  if (again) act(`/api/admin/workers/${encodeURIComponent(again)}/resume`, 'The worker takes work again.');
});

refresh();
checkHealth();
setInterval(refresh, 3000);
setInterval(checkHealth, 15000);
live({ onTask: refresh, onConnect: refresh, everyone: true });

// Throughput over a window: tasks ended per bucket, the backlog, durations, failures, engines
// and the top users, from GET /api/admin/stats.
const statsWindow = document.getElementById('stats-window');
const secs = (v) => (v === null ? '—' : `${v.toFixed(v < 10 ? 2 : 0)} s`);

function showStats(s) {
  const label = (p) => new Date(p.at).toLocaleString();
  const ended = s.series.reduce((n, p) => n + p.completed + p.failed + p.cancelled, 0);
  const summary = `${ended} tasks ended in the window: ${s.series.reduce((n, p) => n + p.completed, 0)} completed, ${s.series.reduce((n, p) => n + p.failed, 0)} failed; ${s.queue.queued} waiting now.`;
  document.getElementById('chart-throughput').replaceChildren(stackedBars(s.series, {
    bars: [{ key: 'completed', label: 'Completed', cls: 'bar-completed' }, { key: 'failed', label: 'Failed', cls: 'bar-failed' }, { key: 'cancelled', label: 'Cancelled', cls: 'bar-cancelled' }],
    line: { key: 'backlog', label: 'Waiting or running', cls: 'line-backlog' },
    summary,
    label,
  }));
  const facts = [
    ['Created', String(s.series.reduce((n, p) => n + p.created, 0))],
    ['Pages done', String(s.series.reduce((n, p) => n + p.pages, 0))],
    ['Task time p50 / p95 / p99', `${secs(s.task_seconds.p50)} / ${secs(s.task_seconds.p95)} / ${secs(s.task_seconds.p99)}`],
    ['Page time p50 / p95 / p99', `${secs(s.page_seconds.p50)} / ${secs(s.page_seconds.p95)} / ${secs(s.page_seconds.p99)}`],
    ['Waiting now', `${s.queue.queued}${s.queue.oldest_queued_secs === null ? '' : `, the oldest for ${s.queue.oldest_queued_secs} s`}${s.queue.paused ? ' (paused)' : ''}`],
  ];
  document.getElementById('stats-facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  const failures = Object.entries(s.failures);
  document.getElementById('stats-failures').replaceChildren(...(failures.length
    ? failures.map(([code, n]) => el('li', {}, el('span', { class: 'mono' }, code), `: ${n}`))
    : [el('li', { class: 'muted' }, 'None.')]));
  document.querySelector('#stats-engines tbody').replaceChildren(...s.engines.map((e) => el('tr', {},
    el('td', {}, e.engine), el('td', {}, String(e.completed)), el('td', {}, String(e.failed)), el('td', {}, String(e.pages)), el('td', {}, secs(e.page_seconds)))));
  document.querySelector('#stats-users tbody').replaceChildren(...s.top_users.map((u) => el('tr', {},
    el('td', {}, u.email), el('td', {}, String(u.tasks)), el('td', {}, String(u.pages)))));
  document.getElementById('stats').hidden = false;
  document.getElementById('stats-state').hidden = true;
}

async function refreshStats() {
  try {
    showStats(await api(`/api/admin/stats?window=${statsWindow.value}`));
  } catch (e) {
    const state = document.getElementById('stats-state');
    state.hidden = false;
    state.textContent = `Could not load the statistics: ${e.message}`;
  }
}

statsWindow.addEventListener('change', refreshStats);
refreshStats();
setInterval(refreshStats, 15000);
