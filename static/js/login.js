import { api, showError } from './lib.js';

const form = document.getElementById('login-form');
const error = document.getElementById('form-error');

/** Where to go after signing in: a local path from ?next=, else the dashboard. */
function next() {
  const target = new URLSearchParams(location.search).get('next') ?? '/';
  // Resolved as the browser would, so `/\evil.example` and the like cannot leave this site.
  const url = new URL(target, location.origin);
  return url.origin === location.origin ? url.pathname + url.search + url.hash : '/';
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = form.querySelector('button[type=submit]');
  const email = form.email.value.trim();
  const password = form.password.value;
  if (!email || !password) {
    showError(error, 'Enter your email and password.');
    return;
  }
  button.disabled = true;
  button.textContent = 'Signing in…';
  try {
    await api('/api/auth/login', { method: 'POST', json: { email, password } });
    location.assign(next());
  } catch (e) {
    showError(error, e.message);
    button.disabled = false;
    button.textContent = 'Sign in';
    form.password.select();
  }
});
