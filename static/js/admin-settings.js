// The runtime settings: one field per setting, its default beside it, Save sends only what
// changed and Reset returns one to the configuration file's value. Operators see them
// read-only.
import { api, el, setupChrome, showError, toast } from './lib.js';

setupChrome();

const form = document.getElementById('settings');
const fields = document.getElementById('settings-fields');
const state = document.getElementById('settings-state');
const error = document.getElementById('settings-error');
const canEdit = Boolean(form.querySelector('button[type="submit"]'));
let shown = [];

const fieldId = (key) => `setting-${key.replace(/\./g, '-')}`;
const plain = (value) => (Array.isArray(value) ? value.join(', ') : typeof value === 'string' ? (value === '' ? '(empty)' : value) : String(value));

/** The input for one setting, chosen by the kind of its value. */
function input(setting) {
  const id = fieldId(setting.key);
  const common = { id, name: setting.key, 'aria-describedby': `${id}-help`, disabled: canEdit ? null : '' };
  if (typeof setting.value === 'boolean') {
    const box = el('input', { ...common, type: 'checkbox' });
    box.checked = setting.value;
    return box;
  }
  if (Array.isArray(setting.value)) {
    return el('fieldset', { id, class: 'choices', 'aria-describedby': `${id}-help` },
      el('legend', { class: 'visually-hidden' }, setting.key),
      ...setting.choices.map((choice) => {
        const box = el('input', { type: 'checkbox', name: setting.key, value: choice, disabled: canEdit ? null : '' });
        box.checked = setting.value.includes(choice);
        return el('label', { class: 'inline' }, box, ` ${choice}`);
      }));
  }
  if (setting.choices) {
    const select = el('select', common, ...setting.choices.map((c) => el('option', { value: c }, c)));
    select.value = setting.value;
    return select;
  }
  if (typeof setting.value === 'number') {
    return el('input', { ...common, type: 'number', min: '0', step: '1', value: String(setting.value), inputmode: 'numeric' });
  }
  return el('input', { ...common, type: 'text', maxlength: '500', value: setting.value });
}

/** What the form holds for one setting, in the setting's JSON type. */
function valueOf(setting) {
  const node = document.getElementById(fieldId(setting.key));
  if (Array.isArray(setting.value)) return [...node.querySelectorAll('input:checked')].map((b) => b.value);
  if (typeof setting.value === 'boolean') return node.checked;
  if (typeof setting.value === 'number') return node.value.trim() === '' ? NaN : Number(node.value);
  return node.value.trim();
}

function render(settings) {
  shown = settings;
  fields.replaceChildren(...settings.map((s) => {
    const id = fieldId(s.key);
    const reset = canEdit && s.overridden
      ? el('button', { type: 'button', class: 'small', 'data-reset': s.key }, 'Reset')
      : null;
    return el('div', { class: 'setting', 'data-key': s.key, 'data-overridden': String(s.overridden) },
      el('label', { for: id, class: 'mono' }, s.key),
      input(s),
      el('p', { id: `${id}-help`, class: 'hint' }, s.description, ' ',
        s.overridden ? el('strong', {}, `Set here; the file says ${plain(s.default)}.`) : 'From the configuration file.'),
      reset);
  }));
  form.hidden = false;
  state.hidden = true;
}

async function load() {
  try {
    render((await api('/api/admin/settings')).settings);
  } catch (e) {
    state.textContent = `Could not load the settings: ${e.message}`;
  }
}

async function change(body) {
  error.hidden = true;
  try {
    render((await api('/api/admin/settings', { method: 'PATCH', json: body })).settings);
    toast('Settings saved. Every instance applies them within two seconds.');
  } catch (e) {
    showError(error, e.message);
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const changed = {};
  for (const s of shown) {
    const value = valueOf(s);
    if (Number.isNaN(value)) {
      showError(error, `${s.key}: enter a whole number.`);
      return;
    }
    if (JSON.stringify(value) !== JSON.stringify(s.value)) changed[s.key] = value;
  }
  if (Object.keys(changed).length === 0) {
    toast('Nothing changed.');
    return;
  }
  change(changed);
});

fields.addEventListener('click', (event) => {
  const key = event.target.closest('[data-reset]')?.dataset.reset;
  if (key) change({ [key]: null });
});

load();
