// The result viewer: the page image with the recognised words' boxes drawn over it, the text
// beside it, linked both ways (hover or click a box or a word), zoom (buttons, fit width or
// page, Ctrl+wheel, pinch, keys) and panning by dragging, boxes that can be hidden,
// confidence shading, copy, downloads and page navigation.
import { api, downloadLinks, el, island, setupChrome, copyText } from './lib.js';

setupChrome();

const SVG = 'http://www.w3.org/2000/svg';
const task = island('task-data');
const state = document.getElementById('viewer-state');
const viewer = document.getElementById('viewer');
const image = document.getElementById('page-image');
const boxes = document.getElementById('boxes');
const text = document.getElementById('text');
const textPanel = text.closest('.text-panel');
const label = document.getElementById('page-label');
const prev = document.getElementById('prev');
const next = document.getElementById('next');
const scroll = document.getElementById('scroll');
const frame = document.getElementById('frame');
const level = document.getElementById('zoom-level');
const showBoxes = document.getElementById('show-boxes');
const hitLabel = document.getElementById('hit-label');
const fitButtons = { width: document.getElementById('fit-width'), page: document.getElementById('fit-page') };
let result = null;
const params = new URLSearchParams(location.search);
let page = Number.parseInt(params.get('page') ?? '1', 10) || 1;
/** Words a search found (from the search results' link): marked on the page; `x*` is a prefix. */
const terms = (params.get('terms') ?? '').toLowerCase().split(/\s+/).filter(Boolean);
let selected = null;
/** Screen pixels per page pixel, and how it follows the window: 'width', 'page' or null (fixed). */
let zoom = 1;
let fit = 'width';
const ZOOM_MIN = 0.05;
const ZOOM_MAX = 8;
const ZOOM_STEP = 1.25;

document.getElementById('downloads').replaceChildren(...downloadLinks(task));

/** Whether a recognised word is one the search found: any of its letter-and-digit runs. */
function isHit(text) {
  if (!terms.length) return false;
  return text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean).some((part) => terms.some(
    (term) => (term.endsWith('*') ? part.startsWith(term.slice(0, -1)) : part === term)));
}

function confidenceClass(c) {
  return c >= 0.9 ? 'c-hi' : c >= 0.7 ? 'c-mid' : 'c-lo';
}

/** Scrolls `container` so that the box (in its content's pixels) is in view, centred if it was not. */
function reveal(container, x, y, width, height) {
  const visible = x >= container.scrollLeft && y >= container.scrollTop
    && x + width <= container.scrollLeft + container.clientWidth
    && y + height <= container.scrollTop + container.clientHeight;
  if (!visible) {
    container.scrollTo({ left: x + width / 2 - container.clientWidth / 2, top: y + height / 2 - container.clientHeight / 2 });
  }
}

/** Marks word `i` in both panels; `show` brings the other panel's copy into view. */
function select(i, show) {
  for (const node of document.querySelectorAll('.selected')) node.classList.remove('selected');
  selected = i;
  if (i === null) return;
  const rect = boxes.querySelector(`[data-i="${i}"]`);
  const word = text.querySelector(`[data-i="${i}"]`);
  rect?.classList.add('selected');
  word?.classList.add('selected');
  if (show === 'text' && word) reveal(textPanel, word.offsetLeft, word.offsetTop, word.offsetWidth, word.offsetHeight);
  if (show === 'image' && rect) {
    const at = (name) => Number(rect.getAttribute(name)) * zoom;
    reveal(scroll, at('x'), at('y'), at('width'), at('height'));
  }
}

function hover(i, on) {
  boxes.querySelector(`[data-i="${i}"]`)?.classList.toggle('hover', on);
  text.querySelector(`[data-i="${i}"]`)?.classList.toggle('hover', on);
}

function pageSize() {
  const data = result.pages[page - 1];
  return { width: Math.max(data.width, 1), height: Math.max(data.height, 1) };
}

/** Sets the zoom, keeping the page point under `anchor` (scroll-box pixels; default its centre) still. */
function setZoom(value, { anchor, keepFit = false } = {}) {
  if (!result) return;
  if (!keepFit) fit = null;
  const before = zoom;
  zoom = Math.min(Math.max(value, ZOOM_MIN), ZOOM_MAX);
  const ax = anchor?.x ?? scroll.clientWidth / 2;
  const ay = anchor?.y ?? scroll.clientHeight / 2;
  const px = (scroll.scrollLeft + ax) / before;
  const py = (scroll.scrollTop + ay) / before;
  const { width, height } = pageSize();
  frame.style.width = `${Math.round(width * zoom)}px`;
  frame.style.height = `${Math.round(height * zoom)}px`;
  scroll.scrollLeft = px * zoom - ax;
  scroll.scrollTop = py * zoom - ay;
  level.textContent = `${Math.round(zoom * 100)}%`;
  for (const [name, button] of Object.entries(fitButtons)) button.setAttribute('aria-pressed', String(fit === name));
}

function fitTo(how) {
  if (!result) return;
  const { width, height } = pageSize();
  const across = (scroll.clientWidth - 2) / width;
  fit = how;
  setZoom(how === 'width' ? across : Math.min(across, (scroll.clientHeight - 2) / height), { keepFit: true });
}

function showPage(n) {
  const pages = result.pages;
  page = Math.min(Math.max(n, 1), pages.length);
  const data = pages[page - 1];
  const source = data.source === 'text_layer' ? ' · text from the PDF' : '';
  label.textContent = `Page ${page} of ${pages.length}${source}`;
  prev.disabled = page === 1;
  next.disabled = page === pages.length;
  image.alt = `Page ${page} of ${task.filename}`;
  image.src = `/api/tasks/${task.id}/pages/${page}/image`;
  boxes.setAttribute('viewBox', `0 0 ${data.width} ${data.height}`);
  const rects = [];
  const paragraphs = [];
  let i = 0;
  for (const block of data.blocks) {
    const lines = [];
    for (const line of block.lines) {
      const words = [];
      for (const word of line.words) {
        const [x0, y0, x1, y1] = word.bbox;
        const rect = document.createElementNS(SVG, 'rect');
        rect.setAttribute('x', x0);
        rect.setAttribute('y', y0);
        rect.setAttribute('width', Math.max(x1 - x0, 1));
        rect.setAttribute('height', Math.max(y1 - y0, 1));
        const hit = isHit(word.text) ? ' hit' : '';
        rect.setAttribute('class', `word ${confidenceClass(word.confidence)}${hit}`);
        rect.dataset.i = String(i);
        const title = document.createElementNS(SVG, 'title');
        title.textContent = `${word.text} (${Math.round(word.confidence * 100)}% confident)`;
        rect.append(title);
        rects.push(rect);
        if (words.length) words.push(' ');
        // One tab stop for all the words (a roving tabindex): the first word until another
        // is reached with the arrow keys.
        words.push(el('span', { class: `w ${confidenceClass(word.confidence)}${hit}`, 'data-i': String(i), tabindex: i === 0 ? '0' : '-1', role: 'button' }, word.text));
        i++;
      }
      lines.push(el('span', { class: 'line' }, ...words), el('br'));
    }
    paragraphs.push(el('p', {}, ...lines));
  }
  boxes.replaceChildren(...rects);
  text.replaceChildren(...(paragraphs.length ? paragraphs : [el('p', { class: 'muted' }, 'No text was found on this page.')]));
  selected = null;
  if (fit) fitTo(fit);
  else setZoom(zoom);
  scroll.scrollTo({ left: 0, top: 0 });
  const hits = boxes.querySelectorAll('.word.hit').length;
  hitLabel.hidden = hits === 0 && !terms.length;
  hitLabel.textContent = terms.length ? `${hits} ${hits === 1 ? 'match' : 'matches'} on this page` : '';
  // The first match in view, in both panels.
  const first = boxes.querySelector('.word.hit');
  if (first) {
    const at = (name) => Number(first.getAttribute(name)) * zoom;
    reveal(scroll, at('x'), at('y'), at('width'), at('height'));
    const word = text.querySelector('.w.hit');
    if (word) reveal(textPanel, word.offsetLeft, word.offsetTop, word.offsetWidth, word.offsetHeight);
  }
}

// Dragging pans (a mouse, a pen or one finger), two fingers pinch-zoom; the page handles
// touches itself (touch-action: none), so the browser neither scrolls nor zooms the whole
// page meanwhile. A drag is not a click on the word under it.
const pointers = new Map();
let drag = null;
let pinch = null;
let dragged = false;
function spread() {
  const [a, b] = [...pointers.values()];
  return Math.hypot(a.x - b.x, a.y - b.y) || 1;
}
scroll.addEventListener('pointerdown', (event) => {
  pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
  if (pointers.size === 2) {
    drag = null;
    pinch = { spread: spread(), zoom };
    return;
  }
  if (event.button !== 0) return;
  drag = { x: event.clientX, y: event.clientY, left: scroll.scrollLeft, top: scroll.scrollTop, moved: false, id: event.pointerId };
});
scroll.addEventListener('pointermove', (event) => {
  if (!pointers.has(event.pointerId)) return;
  pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
  if (pinch && pointers.size === 2) {
    const box = scroll.getBoundingClientRect();
    const [a, b] = [...pointers.values()];
    setZoom(pinch.zoom * (spread() / pinch.spread), { anchor: { x: (a.x + b.x) / 2 - box.left, y: (a.y + b.y) / 2 - box.top } });
    return;
  }
  if (!drag) return;
  const dx = event.clientX - drag.x;
  const dy = event.clientY - drag.y;
  if (!drag.moved && Math.hypot(dx, dy) > 4) {
    drag.moved = true;
    scroll.classList.add('dragging');
    scroll.setPointerCapture(drag.id);
  }
  if (drag.moved) {
    scroll.scrollLeft = drag.left - dx;
    scroll.scrollTop = drag.top - dy;
  }
});
function release(event) {
  pointers.delete(event.pointerId);
  if (pointers.size < 2) pinch = null;
  if (drag?.moved) {
    dragged = true;
    setTimeout(() => { dragged = false; }, 0);
  }
  drag = null;
  scroll.classList.remove('dragging');
}
scroll.addEventListener('pointerup', release);
scroll.addEventListener('pointercancel', release);
scroll.addEventListener('wheel', (event) => {
  // Ctrl+wheel, and a touchpad's pinch (which Chromium sends as one), zoom; the wheel scrolls.
  if (!event.ctrlKey) return;
  event.preventDefault();
  const box = scroll.getBoundingClientRect();
  setZoom(zoom * Math.exp(-event.deltaY * 0.002), { anchor: { x: event.clientX - box.left, y: event.clientY - box.top } });
}, { passive: false });
document.getElementById('zoom-in').addEventListener('click', () => setZoom(zoom * ZOOM_STEP));
document.getElementById('zoom-out').addEventListener('click', () => setZoom(zoom / ZOOM_STEP));
fitButtons.width.addEventListener('click', () => fitTo('width'));
fitButtons.page.addEventListener('click', () => fitTo('page'));
new ResizeObserver(() => { if (fit) fitTo(fit); }).observe(scroll);
showBoxes.addEventListener('change', () => frame.classList.toggle('no-boxes', !showBoxes.checked));

boxes.addEventListener('click', (event) => {
  if (dragged) return;
  const i = event.target.closest('[data-i]')?.dataset.i;
  if (i !== undefined) select(i, 'text');
});
text.addEventListener('click', (event) => {
  const i = event.target.closest('[data-i]')?.dataset.i;
  if (i !== undefined) select(i, 'image');
});
/** Moves the text's one tab stop to word `i` (clamped to the page's words) and focuses it. */
function focusWord(i) {
  const words = text.querySelectorAll('.w');
  if (!words.length) return;
  const target = words[Math.min(Math.max(i, 0), words.length - 1)];
  for (const word of words) word.tabIndex = word === target ? 0 : -1;
  target.focus();
}

const WORD_STEPS = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
text.addEventListener('keydown', (event) => {
  const i = event.target.closest('[data-i]')?.dataset.i;
  if (i === undefined) return;
  if (event.key === 'Enter' || event.key === ' ') {
    event.preventDefault();
    select(i, 'image');
  } else if (event.key in WORD_STEPS) {
    event.preventDefault();
    focusWord(Number(i) + WORD_STEPS[event.key]);
  } else if (event.key === 'Home' || event.key === 'End') {
    event.preventDefault();
    focusWord(event.key === 'Home' ? 0 : Number.MAX_SAFE_INTEGER);
  }
});
for (const panel of [boxes, text]) {
  panel.addEventListener('mouseover', (event) => {
    const i = event.target.closest?.('[data-i]')?.dataset.i;
    if (i !== undefined) hover(i, true);
  });
  panel.addEventListener('mouseout', (event) => {
    const i = event.target.closest?.('[data-i]')?.dataset.i;
    if (i !== undefined) hover(i, false);
  });
}
document.getElementById('shade').addEventListener('change', (event) => {
  viewer.classList.toggle('shaded', event.target.checked);
  document.getElementById('legend').hidden = !event.target.checked;
});
document.getElementById('copy').addEventListener('click', () => copyText(text.innerText, text));
prev.addEventListener('click', () => showPage(page - 1));
next.addEventListener('click', () => showPage(page + 1));

const KEYS = {
  '+': () => setZoom(zoom * ZOOM_STEP),
  '=': () => setZoom(zoom * ZOOM_STEP),
  '-': () => setZoom(zoom / ZOOM_STEP),
  0: () => fitTo('page'),
  w: () => fitTo('width'),
  b: () => showBoxes.click(),
  Escape: () => select(null),
};
document.addEventListener('keydown', (event) => {
  // Arrows on a word move between words (above), on the page image they move it (the browser
  // scrolls it); elsewhere they turn pages.
  if (!result || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest('input, textarea, select, [data-i]')) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (key in KEYS) {
    event.preventDefault();
    KEYS[key]();
    return;
  }
  if (event.target === scroll) return;
  if (key === 'ArrowLeft' && page > 1) showPage(page - 1);
  if (key === 'ArrowRight' && page < result.pages.length) showPage(page + 1);
});
image.addEventListener('error', () => {
  state.hidden = false;
  state.textContent = 'The page image could not be loaded; the text is still here.';
});

async function load() {
  if (task.status !== 'completed') {
    state.replaceChildren('This task has no results yet. ', el('a', { href: `/tasks/${task.id}` }, 'Follow its progress'), '.');
    return;
  }
  try {
    result = await api(`/api/tasks/${task.id}/result?format=json&stream=true`);
  } catch (e) {
    state.replaceChildren(`Could not load the result: ${e.message} `, el('button', { type: 'button', onclick: load }, 'Try again'));
    return;
  }
  if (!result.pages?.length) {
    state.textContent = 'The result has no pages.';
    return;
  }
  state.hidden = true;
  viewer.hidden = false;
  showPage(page);
}
load();
