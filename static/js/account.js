// The account page: quotas and use, API tokens (create, shown once; list; revoke), webhooks
// (endpoints, test events, the delivery log, redelivery) and the password.
import { api, copyText, el, formatBytes, setupChrome, showError, timeEl, toast } from './lib.js';

setupChrome();

/** One quota's row: what is used (null: nothing to count), against its limit (0 is none), with a meter when limited. */
function usageRow(label, used, limit, show) {
  const cells = [el('th', { scope: 'row' }, label), el('td', { 'data-label': 'Used' }, used === null ? '—' : show(used))];
  if (limit > 0 && used === null) {
    cells.push(el('td', { 'data-label': 'Limit' }, show(limit)));
  } else if (limit > 0) {
    cells.push(el('td', { 'data-label': 'Limit' },
      el('meter', { min: 0, max: limit, value: Math.min(used, limit), 'aria-label': `${label}: ${show(used)} of ${show(limit)}` }),
      ` ${show(limit)}`));
  } else {
    cells.push(el('td', { 'data-label': 'Limit', class: 'muted' }, 'no limit'));
  }
  return el('tr', { 'data-quota': label }, ...cells);
}

async function loadUsage() {
  const state = document.getElementById('usage-state');
  const table = document.getElementById('usage');
  let found;
  try {
    found = await api('/api/account/usage');
  } catch (e) {
    state.replaceChildren(`Could not load your usage: ${e.message} `, el('button', { type: 'button', onclick: loadUsage }, 'Try again'));
    return;
  }
  const { limits, usage } = found;
  const count = (n) => n.toLocaleString();
  const reserved = usage.pages_reserved ? ` (${count(usage.pages_reserved)} held by unfinished tasks)` : '';
  table.querySelector('tbody').replaceChildren(
    usageRow(`Pages in ${found.month}`, usage.pages_this_month + usage.pages_reserved, limits.pages_per_month, (n) => `${count(n)}`),
    usageRow('Stored files', usage.stored_bytes, limits.stored_bytes, formatBytes),
    usageRow('Tasks at once', usage.concurrent_tasks, limits.concurrent_tasks, count),
    usageRow('Largest upload', null, limits.max_upload_bytes, formatBytes));
  state.textContent = `Pages count from the first of each month (UTC)${reserved}.`;
  table.hidden = false;
}
loadUsage();

const tokens = document.getElementById('tokens');
const tokensBody = tokens.querySelector('tbody');
const tokensState = document.getElementById('tokens-state');
const tokenForm = document.getElementById('token-form');
const tokenError = document.getElementById('token-error');

function tokenRow(token) {
  const revoke = el('button', { type: 'button', class: 'danger small', 'aria-label': `Revoke ${token.name}` }, 'Revoke');
  revoke.addEventListener('click', async () => {
    if (!confirm(`Revoke the token “${token.name}”? Programs using it stop working at once.`)) return;
    revoke.disabled = true;
    try {
      await api(`/api/tokens/${token.id}`, { method: 'DELETE' });
      // The token shown once is no use any more: take it off the page.
      const shown = document.getElementById('new-token');
      if (shown.dataset.id === token.id) {
        shown.hidden = true;
        delete shown.dataset.id;
        document.getElementById('new-token-value').textContent = '';
      }
      toast('Token revoked.');
      loadTokens();
    } catch (e) {
      toast(e.message);
      revoke.disabled = false;
    }
  });
  return el('tr', { 'data-id': token.id },
    el('td', { 'data-label': 'Name' }, token.name),
    el('td', { 'data-label': 'Starts with' }, el('code', {}, `${token.prefix}…`)),
    el('td', { 'data-label': 'Created' }, timeEl(token.created_at)),
    el('td', { 'data-label': 'Last used' }, token.last_used_at ? timeEl(token.last_used_at) : el('span', { class: 'muted' }, 'never')),
    el('td', { 'data-label': 'May' }, token.scopes.join(', ')),
    el('td', { 'data-label': 'Expires' }, token.expires_at ? timeEl(token.expires_at) : el('span', { class: 'muted' }, 'never')),
    el('td', { class: 'row-actions' }, revoke));
}

async function loadTokens() {
  try {
    const list = await api('/api/tokens');
    tokensBody.replaceChildren(...list.tokens.map(tokenRow));
    tokens.hidden = list.tokens.length === 0;
    tokensState.hidden = list.tokens.length !== 0;
    tokensState.textContent = 'No tokens yet.';
  } catch (e) {
    tokensState.hidden = false;
    tokensState.replaceChildren(`Could not load your tokens: ${e.message} `, el('button', { type: 'button', onclick: loadTokens }, 'Try again'));
  }
}

tokenForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = tokenForm.name.value.trim();
  if (!name) { showError(tokenError, 'Give the token a name, so you know later what uses it.'); return; }
  const scopes = [...tokenForm.querySelectorAll('input[name=scopes]:checked')].map((box) => box.value);
  if (scopes.length === 0) { showError(tokenError, 'Let the token do at least one thing: read, or upload.'); return; }
  const days = tokenForm.expires_in_days.value;
  showError(tokenError, null);
  try {
    const json = { name, scopes, expires_in_days: days ? Number(days) : null };
    const created = await api('/api/tokens', { method: 'POST', json });
    document.getElementById('new-token-value').textContent = created.token;
    document.getElementById('new-token').dataset.id = created.id;
    document.getElementById('new-token').hidden = false;
    tokenForm.reset();
    loadTokens();
  } catch (e) {
    showError(tokenError, e.message);
  }
});
document.getElementById('copy-token').addEventListener('click', () => {
  const value = document.getElementById('new-token-value');
  copyText(value.textContent, value);
});

const passwordForm = document.getElementById('password-form');
const passwordError = document.getElementById('password-error');
passwordForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const done = document.getElementById('password-done');
  done.hidden = true;
  const current = passwordForm.current_password.value;
  const fresh = passwordForm.new_password.value;
  if (fresh !== passwordForm.confirm.value) { showError(passwordError, 'The two new passwords differ.'); return; }
  showError(passwordError, null);
  const button = passwordForm.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const session = await api('/api/auth/password', { method: 'POST', json: { current_password: current, new_password: fresh } });
    // The session was renewed: later changes need its new CSRF token.
    document.querySelector('meta[name="csrf-token"]').content = session.csrf_token;
    passwordForm.reset();
    done.hidden = false;
  } catch (e) {
    showError(passwordError, e.message);
  } finally {
    button.disabled = false;
  }
});

loadTokens();

const webhooks = document.getElementById('webhooks');
const webhooksState = document.getElementById('webhooks-state');
const webhookForm = document.getElementById('webhook-form');
const webhookError = document.getElementById('webhook-error');

/** Shows a signing secret once, after a webhook is added or its secret rotated. */
function showSecret(secret) {
  document.getElementById('new-secret-value').textContent = secret;
  document.getElementById('new-secret').hidden = false;
}

/** One attempt of a delivery, in words: "200 in 35 ms", or why no answer came. */
function attemptText(attempt) {
  if (attempt.status_code !== null) return `${attempt.status_code} in ${attempt.latency_ms} ms`;
  return attempt.error || 'no answer';
}

/** The delivery log of one endpoint: each delivery's attempts, status, next try, and redelivery. */
function deliveryRows(hook, deliveries, reload) {
  return deliveries.flatMap((delivery) => {
    const redeliver = el('button', { type: 'button', class: 'small', 'aria-label': `Redeliver ${delivery.id}` }, 'Redeliver');
    redeliver.addEventListener('click', async () => {
      redeliver.disabled = true;
      try {
        await api(`/api/webhooks/${hook.id}/redeliver`, { method: 'POST', json: { delivery_id: delivery.id } });
        toast('Queued for delivery again.');
        setTimeout(reload, 1500);
      } catch (e) {
        toast(e.message);
        redeliver.disabled = false;
      }
    });
    const attempts = delivery.attempts.length ? delivery.attempts : [null];
    return attempts.map((attempt, i) => el('tr', { 'data-delivery': delivery.id, 'data-status': delivery.status },
      el('td', { 'data-label': 'Event' }, i === 0 ? delivery.event : ''),
      el('td', { 'data-label': 'Attempt' }, attempt ? String(i + 1) : '—'),
      el('td', { 'data-label': 'When' }, attempt ? timeEl(attempt.at, { seconds: true }) : timeEl(delivery.created_at, { seconds: true })),
      el('td', { 'data-label': 'Answer', class: 'attempt-result' }, attempt ? attemptText(attempt) : 'not tried yet'),
      el('td', { 'data-label': 'Next try' }, i === attempts.length - 1 && delivery.next_attempt_at
        ? timeEl(delivery.next_attempt_at, { seconds: true }) : el('span', { class: 'muted' }, i === attempts.length - 1 ? delivery.status : '')),
      el('td', { class: 'row-actions' }, i === attempts.length - 1 && delivery.status !== 'pending' ? redeliver : '')));
  });
}

function webhookItem(hook) {
  const log = el('table', { class: 'deliveries', hidden: true },
    el('caption', { class: 'visually-hidden' }, `Deliveries to ${hook.url}`),
    el('thead', {}, el('tr', {}, ...['Event', 'Attempt', 'When', 'Answer', 'Next try'].map((h) => el('th', { scope: 'col' }, h)),
      el('th', { scope: 'col' }, el('span', { class: 'visually-hidden' }, 'Actions')))),
    el('tbody'));
  const logState = el('p', { class: 'state muted', role: 'status', 'aria-live': 'polite' });
  const loadLog = async () => {
    try {
      const { deliveries } = await api(`/api/webhooks/${hook.id}/deliveries`);
      log.querySelector('tbody').replaceChildren(...deliveryRows(hook, deliveries, loadLog));
      log.hidden = deliveries.length === 0;
      logState.textContent = deliveries.length ? '' : 'Nothing sent yet.';
    } catch (e) {
      logState.textContent = `Could not load the deliveries: ${e.message}`;
    }
  };
  const action = (label, handler, cls = 'small') => {
    const button = el('button', { type: 'button', class: cls }, label);
    button.addEventListener('click', async () => {
      button.disabled = true;
      try { await handler(); } catch (e) { toast(e.message); } finally { button.disabled = false; }
    });
    return button;
  };
  const test = action('Send test event', async () => {
    await api(`/api/webhooks/${hook.id}/test`, { method: 'POST' });
    toast('Test event queued.');
    setTimeout(loadLog, 1500);
  });
  const refresh = action('Refresh log', loadLog);
  const rotate = action('Rotate secret', async () => {
    if (!confirm('Make a new signing secret? The current one keeps signing for 24 hours, then stops.')) return;
    const rotated = await api(`/api/webhooks/${hook.id}/rotate`, { method: 'POST' });
    showSecret(rotated.secret);
    loadWebhooks();
  });
  const remove = action('Delete', async () => {
    if (!confirm(`Delete the webhook to ${hook.url}? Nothing more is sent to it.`)) return;
    await api(`/api/webhooks/${hook.id}`, { method: 'DELETE' });
    toast('Webhook deleted.');
    loadWebhooks();
  }, 'danger small');
  const enable = hook.disabled_at && action('Enable again', async () => {
    await api(`/api/webhooks/${hook.id}/enable`, { method: 'POST' });
    toast('Webhook enabled.');
    loadWebhooks();
  });
  const notice = hook.disabled_at
    ? el('p', { class: 'warning-box', role: 'alert' }, `Disabled `, timeEl(hook.disabled_at), `: ${hook.disabled_reason || 'too many failures'} Nothing is sent to it until you enable it again.`)
    : hook.failing_since && el('p', { class: 'warning-box' }, 'Every delivery has failed since ', timeEl(hook.failing_since), '; after 5 days the endpoint is disabled.');
  const item = el('li', { class: 'webhook', 'data-id': hook.id },
    el('p', {}, el('code', { class: 'webhook-url' }, hook.url), ' ', el('span', { class: 'muted' }, hook.events.join(', '))),
    notice,
    el('p', { class: 'row-actions' }, hook.disabled_at ? enable : test, refresh, rotate, remove),
    logState, log);
  loadLog();
  return item;
}

async function loadWebhooks() {
  try {
    const list = await api('/api/webhooks');
    webhooks.replaceChildren(...list.webhooks.map(webhookItem));
    webhooks.hidden = list.webhooks.length === 0;
    webhooksState.hidden = list.webhooks.length !== 0;
    webhooksState.textContent = 'No webhooks yet.';
  } catch (e) {
    webhooksState.hidden = false;
    webhooksState.replaceChildren(`Could not load your webhooks: ${e.message} `, el('button', { type: 'button', onclick: loadWebhooks }, 'Try again'));
  }
}

webhookForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const url = webhookForm.url.value.trim();
  if (!url) { showError(webhookError, 'Give the URL to post events to.'); return; }
  if (!/^https?:\/\//i.test(url)) { showError(webhookError, 'The URL must start with http:// or https://.'); return; }
  const events = [...webhookForm.querySelectorAll('input[name=events]:checked')].map((box) => box.value);
  if (events.length === 0) { showError(webhookError, 'Choose at least one event to send.'); return; }
  showError(webhookError, null);
  try {
    const created = await api('/api/webhooks', { method: 'POST', json: { url, events } });
    showSecret(created.secret);
    webhookForm.reset();
    loadWebhooks();
  } catch (e) {
    showError(webhookError, e.message);
  }
});
document.getElementById('copy-secret').addEventListener('click', () => {
  const value = document.getElementById('new-secret-value');
  copyText(value.textContent, value);
});
loadWebhooks();
