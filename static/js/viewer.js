// The result viewer: the page image with the recognised words' boxes drawn over it, the text
// beside it, linked both ways (hover or click a box or a word), confidence shading, copy,
// downloads and page navigation.
import { api, downloadLinks, el, island, setupChrome, copyText } from './lib.js';

setupChrome();

const SVG = 'http://www.w3.org/2000/svg';
const task = island('task-data');
const state = document.getElementById('viewer-state');
const viewer = document.getElementById('viewer');
const image = document.getElementById('page-image');
const boxes = document.getElementById('boxes');
const text = document.getElementById('text');
const label = document.getElementById('page-label');
const prev = document.getElementById('prev');
const next = document.getElementById('next');
let result = null;
let page = 1;
let selected = null;

document.getElementById('downloads').replaceChildren(...downloadLinks(task));

function confidenceClass(c) {
  return c >= 0.9 ? 'c-hi' : c >= 0.7 ? 'c-mid' : 'c-lo';
}

/** Marks word `i` in both panels; `scroll` brings the other panel's copy into view. */
function select(i, scroll) {
  for (const node of document.querySelectorAll('.selected')) node.classList.remove('selected');
  selected = i;
  if (i === null) return;
  const rect = boxes.querySelector(`[data-i="${i}"]`);
  const word = text.querySelector(`[data-i="${i}"]`);
  rect?.classList.add('selected');
  word?.classList.add('selected');
  if (scroll === 'text') word?.scrollIntoView({ block: 'nearest' });
  if (scroll === 'image') rect?.scrollIntoView?.({ block: 'nearest' });
}

function hover(i, on) {
  boxes.querySelector(`[data-i="${i}"]`)?.classList.toggle('hover', on);
  text.querySelector(`[data-i="${i}"]`)?.classList.toggle('hover', on);
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
        rect.setAttribute('class', `word ${confidenceClass(word.confidence)}`);
        rect.dataset.i = String(i);
        const title = document.createElementNS(SVG, 'title');
        title.textContent = `${word.text} (${Math.round(word.confidence * 100)}% confident)`;
        rect.append(title);
        rects.push(rect);
        if (words.length) words.push(' ');
        // One tab stop for all the words (a roving tabindex): the first word until another
        // is reached with the arrow keys.
        words.push(el('span', { class: `w ${confidenceClass(word.confidence)}`, 'data-i': String(i), tabindex: i === 0 ? '0' : '-1', role: 'button' }, word.text));
        i++;
      }
      lines.push(el('span', { class: 'line' }, ...words), el('br'));
    }
    paragraphs.push(el('p', {}, ...lines));
  }
  boxes.replaceChildren(...rects);
  text.replaceChildren(...(paragraphs.length ? paragraphs : [el('p', { class: 'muted' }, 'No text was found on this page.')]));
  selected = null;
}

boxes.addEventListener('click', (event) => {
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
document.addEventListener('keydown', (event) => {
  // Arrows on a word move between words (above); elsewhere they turn pages.
  if (!result || event.target.closest('input, textarea, select, [data-i]')) return;
  if (event.key === 'ArrowLeft' && page > 1) showPage(page - 1);
  if (event.key === 'ArrowRight' && page < result.pages.length) showPage(page + 1);
  if (event.key === 'Escape') select(null);
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
  if (!task.formats.includes('json')) {
    state.textContent = 'Word boxes need the JSON result, which this task did not ask for. Use the downloads above.';
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
  showPage(1);
}
load();
