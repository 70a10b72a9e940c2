import { api, showError } from './lib.js';

const form = document.getElementById('reset-form');
const error = document.getElementById('form-error');

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const password = form.password.value;
  if (password !== form.confirm.value) {
    showError(error, 'The two passwords differ.');
    form.confirm.focus();
    return;
  }
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    await api('/api/auth/reset', { method: 'POST', json: { token: form.dataset.token, password } });
    form.hidden = true;
    document.getElementById('done').hidden = false;
  } catch (e) {
    showError(error, e.message);
    button.disabled = false;
  }
});
