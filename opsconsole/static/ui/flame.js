// A flame graph (icicle: roots on top) of folded stacks — `thread;frame;frame count` lines, as
// GET /ops/profile?format=collapsed returns them — drawn on a canvas. Hover names a frame and
// its share of the samples; a click zooms into a frame, a click on the top row zooms back out.
// No library: a few dozen lines of canvas work, and nothing inline (the CSP allows none).
"use strict";

window.opsFlame = (() => {
  const ROW = 18; // CSS pixels per stack level
  const FONT = '11px ui-monospace, "DejaVu Sans Mono", monospace';

  // {name, value, children: Map} with the samples of every folded line added along its path.
  function parse(text) {
    const root = { name: "all", value: 0, children: new Map() };
    for (const line of text.split("\n")) {
      const cut = line.lastIndexOf(" ");
      const count = Number(line.slice(cut + 1));
      if (cut <= 0 || !Number.isFinite(count) || count <= 0) {
        continue;
      }
      root.value += count;
      let node = root;
      for (const name of line.slice(0, cut).split(";")) {
        let child = node.children.get(name);
        if (child === undefined) {
          child = { name, value: 0, children: new Map() };
          node.children.set(name, child);
        }
        child.value += count;
        node = child;
      }
    }
    return root;
  }

  function depthOf(node) {
    let deepest = 0;
    for (const child of node.children.values()) {
      deepest = Math.max(deepest, depthOf(child));
    }
    return deepest + 1;
  }

  // Warm colours, stable per frame name, so one function keeps its colour across redraws.
  function colour(name) {
    let h = 0;
    for (let i = 0; i < name.length; i++) {
      h = (h * 31 + name.charCodeAt(i)) | 0;
    }
    const hue = 10 + (Math.abs(h) % 45);
    const light = 48 + (Math.abs(h >> 8) % 14);
    return `hsl(${hue} 75% ${light}%)`;
  }

  // One flame graph on `canvas`; `tip` shows the frame under the pointer.
  function draw(canvas, tip, text) {
    const root = parse(text);
    let focus = root;
    let boxes = []; // [x, y, w, node] in CSS pixels, for hit testing

    function paint() {
      const width = canvas.parentElement.clientWidth || 600;
      const depth = depthOf(focus);
      const ratio = window.devicePixelRatio || 1;
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(depth * ROW * ratio);
      canvas.style.height = `${depth * ROW}px`;
      const ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.font = FONT;
      ctx.textBaseline = "middle";
      boxes = [];
      const lay = (node, x, y, w) => {
        if (w < 0.5) {
          return; // too thin to see or to point at
        }
        boxes.push([x, y, w, node]);
        ctx.fillStyle = node === focus && focus !== root ? "#8b949e" : colour(node.name);
        ctx.fillRect(x, y, Math.max(w - 1, 0.5), ROW - 1);
        if (w > 30) {
          ctx.fillStyle = "#111";
          ctx.save();
          ctx.beginPath();
          ctx.rect(x, y, w - 2, ROW);
          ctx.clip();
          ctx.fillText(node.name, x + 3, y + ROW / 2);
          ctx.restore();
        }
        let cx = x;
        for (const child of node.children.values()) {
          const cw = (w * child.value) / node.value;
          lay(child, cx, y + ROW, cw);
          cx += cw;
        }
      };
      if (focus.value > 0) {
        lay(focus, 0, 0, width);
      }
      canvas.dataset.frames = String(boxes.length);
    }

    function at(event) {
      const rect = canvas.getBoundingClientRect();
      const x = event.clientX - rect.left;
      const y = event.clientY - rect.top;
      return boxes.find(([bx, by, bw]) => x >= bx && x < bx + bw && y >= by && y < by + ROW);
    }

    canvas.onmousemove = (event) => {
      const hit = at(event);
      tip.textContent = hit
        ? `${hit[3].name} — ${hit[3].value} samples, ${((100 * hit[3].value) / root.value).toFixed(1)} %`
        : "";
    };
    canvas.onclick = (event) => {
      const hit = at(event);
      if (hit) {
        focus = hit[3] === focus ? root : hit[3];
        paint();
      }
    };
    paint();
    return { samples: root.value, repaint: paint };
  }

  return { draw, parse };
})();
