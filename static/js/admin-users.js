// Accounts for admins: search, role, disable or enable (the account's sessions and tokens stop
// at once), erase after typing the email, and invite links.
import { api, copyText, el, formatBytes, setupChrome, timeEl, toast } from './lib.js';

setupChrome();

const form = document.getElementById('user-search');
const table = document.getElementById('users');
const body = table.querySelector('tbody');
const state = document.getElementById('users-state');
const more = document.getElementById('more-users');
const dialog = document.getElementById('confirm-erase');
const me = document.querySelector('meta[name="user-id"]')?.content;
const ROLES = ['user', 'operator', 'admin'];
// How long an account's finished tasks are kept: '' is the install's `retention.days`.
const KEEP = [['', "The install's setting"], ['1', '1 day'], ['7', '7 days'], ['30', '30 days'],
  ['90', '90 days'], ['365', 'A year'], ['0', 'Until deleted']];
// An account's own quotas: the API's field, its label, and bytes per unit typed.
const QUOTAS = [['pages_per_month', 'Pages a month', 1], ['stored_bytes', 'Stored MiB', 1048576],
  ['concurrent_tasks', 'Tasks at once', 1], ['max_upload_bytes', 'Largest upload MiB', 1048576]];
let cursor = null;

/** The quotas cell: a summary of the account's own limits, opening to a form that sets them. */
function quotaCell(u) {
  const own = QUOTAS.filter(([field]) => u.quota[field] !== null);
  const summary = own.length
    ? own.map(([field, label, unit]) => `${label}: ${u.quota[field] === 0 ? 'no limit' : (u.quota[field] / unit).toLocaleString()}`).join(', ')
    : "The install's";
  const inputs = QUOTAS.map(([field, label, unit]) => el('label', { class: 'quota-field' }, label,
    el('input', { type: 'number', min: '0', step: 'any', name: field, placeholder: "install's",
      value: u.quota[field] === null ? '' : String(u.quota[field] / unit) })));
  const form = el('form', { class: 'quota-form', 'data-quota': u.id }, ...inputs,
    el('p', { class: 'hint' }, "Empty takes the install's quota.* setting; 0 is no limit."),
    el('button', { type: 'submit', class: 'small' }, 'Save quotas'));
  return el('details', { class: 'quota' }, el('summary', { 'aria-label': `Quotas of ${u.email}` }, summary), form);
}

function row(u) {
  const self = u.id === me;
  const role = el('select', { 'data-role': u.id, 'aria-label': `Role of ${u.email}`, disabled: self },
    ...ROLES.map((r) => el('option', { value: r }, r)));
  role.value = u.role;
  const toggle = self ? null : el('button', { type: 'button', class: 'small', 'data-disable': u.id, 'data-to': String(!u.disabled) }, u.disabled ? 'Enable' : 'Disable');
  const days = u.retention_days === null ? '' : String(u.retention_days);
  const keep = el('select', { 'data-keep': u.id, 'aria-label': `How long ${u.email}'s finished tasks are kept` },
    ...KEEP.map(([value, label]) => el('option', { value }, label)));
  if (!KEEP.some(([value]) => value === days)) keep.append(el('option', { value: days }, `${days} days`));
  keep.value = days;
  const erase = self ? null : el('button', { type: 'button', class: 'small danger', 'data-erase': u.id, 'data-email': u.email }, 'Erase…');
  return el('tr', { 'data-id': u.id, 'data-email': u.email, 'data-disabled': String(u.disabled) },
    el('td', {}, u.email, self ? el('span', { class: 'muted small' }, ' (you)') : null),
    el('td', {}, role),
    el('td', {}, el('span', { class: 'badge', 'data-outcome': u.disabled ? 'failure' : 'success' }, u.disabled ? 'Disabled' : 'Active')),
    el('td', {}, String(u.tasks)),
    el('td', {}, String(u.pages_this_month)),
    el('td', {}, formatBytes(u.stored_bytes)),
    el('td', {}, keep),
    el('td', {}, quotaCell(u)),
    el('td', {}, timeEl(u.last_login)),
    el('td', { class: 'row-actions' }, toggle, erase));
}

async function load(reset) {
  const query = new URLSearchParams({ limit: '50' });
  const search = form.elements.search.value.trim();
  if (search) query.set('search', search);
  if (!reset && cursor) query.set('cursor', cursor);
  try {
    const page = await api(`/api/admin/users?${query}`);
    if (reset) body.replaceChildren();
    body.append(...page.users.map(row));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    table.hidden = body.rows.length === 0;
    state.hidden = body.rows.length !== 0;
    state.textContent = 'No account matches.';
  } catch (e) {
    state.hidden = false;
    state.textContent = `Could not load the accounts: ${e.message}`;
  }
}

async function update(id, change, done) {
  try {
    const user = await api(`/api/admin/users/${id}`, { method: 'PATCH', json: change });
    body.querySelector(`tr[data-id="${id}"]`)?.replaceWith(row(user));
    toast(done(user));
  } catch (e) {
    toast(e.message);
    load(true);
  }
}

form.addEventListener('submit', (event) => { event.preventDefault(); load(true); });
body.addEventListener('submit', (event) => {
  const quota = event.target.closest('[data-quota]');
  if (!quota) return;
  event.preventDefault();
  const change = {};
  for (const [field, , unit] of QUOTAS) {
    const value = quota.elements[field].value.trim();
    change[field] = value === '' ? null : Math.round(Number(value) * unit);
  }
  update(quota.dataset.quota, { quota: change }, (u) => `${u.email}'s quotas are saved.`);
});
more.addEventListener('click', () => load(false));

body.addEventListener('change', (event) => {
  const id = event.target.dataset.role;
  if (id) update(id, { role: event.target.value }, (u) => `${u.email} is now ${u.role === 'user' ? 'a user' : `an ${u.role}`}.`);
  const keeper = event.target.dataset.keep;
  if (keeper) {
    const value = event.target.value;
    update(keeper, { retention_days: value === '' ? null : Number(value) }, (u) => (u.retention_days === null
      ? `${u.email}'s tasks follow the install's retention.`
      : u.retention_days === 0 ? `${u.email}'s tasks are kept until deleted.`
        : `${u.email}'s finished tasks are erased after ${u.retention_days} days.`));
  }
});

body.addEventListener('click', (event) => {
  const toggle = event.target.closest('[data-disable]');
  if (toggle) {
    const disabled = toggle.dataset.to === 'true';
    update(toggle.dataset.disable, { disabled }, (u) => (disabled ? `${u.email} is disabled: their sessions and tokens no longer work.` : `${u.email} can sign in again.`));
    return;
  }
  const erase = event.target.closest('[data-erase]');
  if (erase) {
    dialog.dataset.id = erase.dataset.erase;
    document.getElementById('erase-email').textContent = erase.dataset.email;
    document.getElementById('erase-confirm').value = '';
    dialog.returnValue = '';
    dialog.showModal();
  }
});

dialog.addEventListener('close', async () => {
  if (dialog.returnValue !== 'go') return;
  const typed = document.getElementById('erase-confirm').value.trim();
  try {
    await api(`/api/admin/users/${dialog.dataset.id}?confirm=${encodeURIComponent(typed)}`, { method: 'DELETE' });
    body.querySelector(`tr[data-id="${dialog.dataset.id}"]`)?.remove();
    toast('The account and everything it held are erased.');
  } catch (e) {
    toast(e.message);
  }
});

load(true);

// Invites: make one (the link is shown once), list those pending, revoke one.
const inviteForm = document.getElementById('invite-form');
const invites = document.getElementById('invites');

async function loadInvites() {
  try {
    const { invites: pending } = await api('/api/admin/invites');
    invites.querySelector('tbody').replaceChildren(...pending.map((i) => el('tr', { 'data-id': i.id },
      el('td', {}, i.email ?? 'Anyone with the link'),
      el('td', {}, timeEl(i.created_at)),
      el('td', {}, timeEl(i.expires_at)),
      el('td', { class: 'row-actions' }, el('button', { type: 'button', class: 'small', 'data-revoke': i.id }, 'Revoke')))));
    invites.hidden = pending.length === 0;
  } catch (e) {
    toast(`Could not load the invites: ${e.message}`);
  }
}

inviteForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = { days: Number(inviteForm.elements.days.value) };
  const email = inviteForm.elements.email.value.trim();
  if (email) body.email = email;
  try {
    const made = await api('/api/admin/invites', { method: 'POST', json: body });
    document.getElementById('invite-link').textContent = made.link;
    document.getElementById('invite-made').hidden = false;
    inviteForm.reset();
    loadInvites();
  } catch (e) {
    toast(e.message);
  }
});

document.getElementById('invite-copy').addEventListener('click', () => {
  const link = document.getElementById('invite-link');
  copyText(link.textContent, link);
});

invites.addEventListener('click', async (event) => {
  const id = event.target.closest('[data-revoke]')?.dataset.revoke;
  if (!id) return;
  try {
    await api(`/api/admin/invites/${id}`, { method: 'DELETE' });
    toast('Revoked: the link makes no account.');
    loadInvites();
  } catch (e) {
    toast(e.message);
  }
});

loadInvites();
