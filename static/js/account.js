// The account page: quotas and use, API tokens (create, shown once; list; revoke) and the
// password.
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
