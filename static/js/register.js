import { api, showError } from './lib.js';

const form = document.getElementById('register-form');
const error = document.getElementById('form-error');

form?.addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = form.querySelector('button[type=submit]');
  const email = form.email.value.trim();
  const password = form.password.value;
  const minimum = Number(form.password.getAttribute('minlength'));
  if (!email.includes('@')) { showError(error, 'Enter a valid email address.'); form.email.focus(); return; }
  if (password.length < minimum) {
    showError(error, `The password needs at least ${minimum} characters.`);
    form.password.focus();
    return;
  }
  const body = { email, password };
  if (form.invite_code) body.invite_code = form.invite_code.value.trim();
  button.disabled = true;
  button.textContent = 'Creating your account…';
  try {
    // Registering signs the new account in: no separate login, which a throttled address
    // (someone else's wrong passwords) would refuse.
    await api('/api/auth/register', { method: 'POST', json: body });
    location.assign('/');
  } catch (e) {
    showError(error, e.message);
    button.disabled = false;
    button.textContent = 'Create account';
  }
});
