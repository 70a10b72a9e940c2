// Small SVG charts for the console, drawn here (no library, nothing from a CDN). Each chart
// carries a text summary for screen readers; each bar a tooltip with its figures.
const SVG = 'http://www.w3.org/2000/svg';

function svgEl(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  node.append(...children);
  return node;
}

/**
 * Stacked bars per point, and optionally a line over them.
 * `bars`: [{ key, label, cls }] stacked bottom up; `line`: { key, label, cls } on its own scale.
 */
export function stackedBars(points, { bars, line, summary, label = (p) => p.at, height = 160 }) {
  const width = 600;
  const pad = { top: 8, bottom: 18, left: 4, right: 4 };
  const inner = height - pad.top - pad.bottom;
  const slot = (width - pad.left - pad.right) / Math.max(points.length, 1);
  const total = (p) => bars.reduce((sum, b) => sum + (p[b.key] ?? 0), 0);
  const max = Math.max(1, ...points.map(total));
  const svg = svgEl('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': summary, class: 'chart', preserveAspectRatio: 'none' });
  svg.append(svgEl('line', { x1: 0, x2: width, y1: height - pad.bottom, y2: height - pad.bottom, class: 'axis' }));
  points.forEach((p, i) => {
    let y = height - pad.bottom;
    const x = pad.left + i * slot + slot * 0.1;
    const tip = [label(p), ...bars.map((b) => `${b.label}: ${p[b.key] ?? 0}`), line ? `${line.label}: ${p[line.key] ?? 0}` : null].filter(Boolean).join('\n');
    const group = svgEl('g', {}, svgEl('title', {}, tip));
    for (const b of bars) {
      const h = ((p[b.key] ?? 0) / max) * inner;
      if (h <= 0) continue;
      y -= h;
      group.append(svgEl('rect', { x, y, width: slot * 0.8, height: h, class: b.cls }));
    }
    // A transparent target over the whole slot, so that empty buckets have a tooltip too.
    group.append(svgEl('rect', { x: pad.left + i * slot, y: pad.top, width: slot, height: inner, class: 'hit' }));
    svg.append(group);
  });
  if (line) {
    const lineMax = Math.max(1, ...points.map((p) => p[line.key] ?? 0));
    const coords = points.map((p, i) => `${pad.left + (i + 0.5) * slot},${height - pad.bottom - ((p[line.key] ?? 0) / lineMax) * inner}`);
    svg.append(svgEl('polyline', { points: coords.join(' '), class: line.cls }));
  }
  return svg;
}
