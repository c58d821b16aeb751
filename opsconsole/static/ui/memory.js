// The memory dashboard: the leak detector's history as two uPlot charts (RSS and traced
// memory; live objects of the fastest growing classes), its report as tables, and a flame
// graph of a CPU profile. Data comes from GET /ops/leaks and GET /ops/profile?format=collapsed
// with the session cookie; app.js shows and hides the view through window.opsMemory.
"use strict";

window.opsMemory = (() => {
  const $ = (id) => document.getElementById(id);
  const TYPES_CHARTED = 5;
  const MIB = 1024 * 1024;
  // Series colours; the browser test looks for the RSS line's colour in the canvas.
  const COLOURS = ["#58a6ff", "#f0883e", "#3fb950", "#d2a8ff", "#f47067", "#e3b341", "#76e3ea"];

  let role = "viewer";
  let shown = false;
  let timer = null;
  let seq = 0; // only the latest report may draw
  const charts = { memory: null, types: null };

  function request(method, path) {
    return fetch(path, { method, credentials: "same-origin", cache: "no-store" });
  }

  const errorText = window.opsHttp.errorMessage;

  function bytes(n) {
    const sign = n < 0 ? "-" : "";
    let v = Math.abs(n);
    for (const unit of ["B", "KiB", "MiB", "GiB"]) {
      if (v < 1024 || unit === "GiB") {
        return `${sign}${unit === "B" ? v.toFixed(0) : v.toFixed(1)} ${unit}`;
      }
      v /= 1024;
    }
    return String(n);
  }

  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];

  function clock(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
  }

  function setState(el, text, bad = false) {
    el.textContent = text;
    el.classList.toggle("bad", bad);
  }

  // -- charts -----------------------------------------------------------------------------

  // A uPlot chart in `box` for these series labels; rebuilt when the labels change.
  function chart(key, box, labels, data, valueFormat) {
    const existing = charts[key];
    const same = existing && existing.labels.join("\n") === labels.join("\n");
    box.dataset.samples = String(data[0].length);
    if (same) {
      existing.plot.setData(data);
      return;
    }
    if (existing) {
      existing.plot.destroy();
    }
    const opts = {
      width: Math.max(box.clientWidth, 300),
      height: 220,
      legend: { show: true },
      scales: { x: { time: true } },
      axes: [
        {
          stroke: "#8b949e",
          grid: { stroke: "#2d333b" },
          ticks: { stroke: "#2d333b" },
          // samples are seconds apart: whole-second ticks, shown as wall-clock time
          incrs: TIME_STEPS,
          space: 70,
          values: (_u, splits) => splits.map(clock),
        },
        {
          stroke: "#8b949e",
          grid: { stroke: "#2d333b" },
          ticks: { stroke: "#2d333b" },
          size: 90,
          values: (_u, splits) => splits.map(valueFormat),
        },
      ],
      series: [
        {},
        ...labels.map((label, i) => ({
          label,
          stroke: COLOURS[i % COLOURS.length],
          width: 2,
          spanGaps: false,
          value: (_u, v) => (v == null ? "—" : valueFormat(v)),
        })),
      ],
    };
    charts[key] = { labels, plot: new uPlot(opts, data, box) };
  }

  function drawCharts(r) {
    const h = r.history;
    const t = h.t;
    chart("memory", $("chart-memory"), ["RSS", "traced (tracemalloc)"], [t, h.rss, h.traced], bytes);
    // Leaking classes first, then the ones that grew most over the window shown. The rates in
    // the report stay 0 until the trend test has enough samples; the history moves at once.
    const grew = (n) => {
      const seen = h.types[n].filter((v) => v != null);
      return seen.length ? seen[seen.length - 1] - seen[0] : 0;
    };
    const leaking = new Set(r.growth.filter((g) => g.leaking).map((g) => g.type));
    const names = r.growth
      .map((g) => g.type)
      .filter((n) => n in h.types)
      .sort((a, b) => Number(leaking.has(b)) - Number(leaking.has(a)) || grew(b) - grew(a))
      .slice(0, TYPES_CHARTED);
    const counts = (v) => (Math.abs(v) >= 1e6 ? `${(v / 1e6).toFixed(1)}M` : Math.round(v).toLocaleString());
    chart("types", $("chart-types"), names.length ? names : ["(no class grew)"], [
      t,
      ...(names.length ? names.map((n) => h.types[n]) : [t.map(() => null)]),
    ], counts);
  }

  // -- report -----------------------------------------------------------------------------

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text; // text only: class names come from the host
    if (cls) {
      td.className = cls;
    }
    row.appendChild(td);
  }

  function drawReport(r) {
    const verdict = {
      leak: "leak",
      no_leak: "no leak",
      insufficient_data: `not enough samples yet (${r.samples} of ${r.needed})`,
    }[r.verdict];
    const rss = `RSS ${r.rss_bytes_per_min >= 0 ? "+" : ""}${bytes(r.rss_bytes_per_min)}/min`;
    const sure = r.verdict === "insufficient_data" ? "" : ` · confidence ${r.confidence.toFixed(3)}`;
    setState($("leak-verdict"), `verdict: ${verdict}${sure} · ${rss}`, r.verdict === "leak");
    const body = $("leak-growth").tBodies[0];
    body.replaceChildren();
    for (const g of r.growth.slice(0, 20)) {
      const row = document.createElement("tr");
      row.classList.toggle("leaking", g.leaking);
      cell(row, g.type);
      cell(row, g.objects_per_min.toFixed(1), "num");
      cell(row, `${bytes(g.bytes_per_min)}/min`, "num");
      cell(row, g.confidence.toFixed(3), "num");
      cell(row, g.leaking ? "LEAK" : "");
      body.appendChild(row);
    }
    const sites = $("leak-sites");
    sites.hidden = r.sites.length === 0;
    sites.tBodies[0].replaceChildren(
      ...r.sites.map((s) => {
        const row = document.createElement("tr");
        cell(row, `${s.file}:${s.line}`);
        cell(row, `${bytes(s.bytes_per_min)}/min`, "num");
        return row;
      }),
    );
  }

  function drawState(r) {
    let text;
    if (r.started_at === null) {
      text = "leak detector: off";
    } else {
      const since = new Date(r.started_at * 1000).toLocaleTimeString();
      text = r.running
        ? `leak detector: sampling every ${r.interval} s since ${since} · ${r.samples} samples`
        : `leak detector: stopped · ${r.samples} samples from ${since}`;
    }
    setState($("leak-state"), text);
    $("leak-start").disabled = r.running;
    $("leak-stop").disabled = !r.running;
  }

  // -- refresh ----------------------------------------------------------------------------

  async function refresh() {
    const mine = ++seq;
    clearTimeout(timer);
    let r = null;
    try {
      const resp = await request("GET", "/ops/leaks");
      if (!resp.ok) {
        setState($("leak-state"), await errorText(resp), true);
      } else {
        r = await resp.json();
      }
    } catch (err) {
      setState($("leak-state"), `request failed: ${err.message}`, true);
    }
    if (mine !== seq || !shown) {
      return;
    }
    if (r !== null) {
      drawState(r);
      drawReport(r);
      drawCharts(r);
    }
    // While sampling, follow it (at most every 2 s, at least every 10 s).
    const every = r && r.running ? Math.min(Math.max(r.interval, 2), 10) : 15;
    timer = setTimeout(refresh, every * 1000);
  }

  async function control(action) {
    const path =
      action === "start"
        ? `/ops/leaks/start?interval=${encodeURIComponent($("leak-interval").value)}`
        : "/ops/leaks/stop";
    try {
      const resp = await request("POST", path);
      if (!resp.ok) {
        setState($("leak-state"), await errorText(resp), true);
        return;
      }
    } catch (err) {
      setState($("leak-state"), `request failed: ${err.message}`, true);
      return;
    }
    refresh();
  }

  // -- flame graph ------------------------------------------------------------------------

  let flame = null;

  async function profile() {
    const seconds = $("flame-seconds").value;
    const state = $("flame-state");
    $("flame-run").disabled = true;
    setState(state, `sampling every thread for ${seconds} s…`);
    try {
      const resp = await request("GET", `/ops/profile?seconds=${encodeURIComponent(seconds)}&format=collapsed`);
      if (!resp.ok) {
        setState(state, await errorText(resp), true);
        return;
      }
      const canvas = $("flame");
      canvas.hidden = false;
      flame = window.opsFlame.draw(canvas, $("flame-tip"), await resp.text());
      setState(state, `${flame.samples} samples · hover for names, click to zoom`);
    } catch (err) {
      setState(state, `request failed: ${err.message}`, true);
    } finally {
      $("flame-run").disabled = false;
    }
  }

  function resize() {
    for (const key of ["memory", "types"]) {
      const c = charts[key];
      if (c) {
        c.plot.setSize({ width: Math.max(c.plot.root.parentElement.clientWidth, 300), height: 220 });
      }
    }
    if (flame !== null) {
      flame.repaint();
    }
  }

  // -- wiring -----------------------------------------------------------------------------

  $("leak-start").addEventListener("click", () => control("start"));
  $("leak-stop").addEventListener("click", () => control("stop"));
  $("flame-run").addEventListener("click", profile);
  window.addEventListener("resize", () => {
    if (shown) {
      resize();
    }
  });

  return {
    show(who) {
      role = who.role;
      // Starting, stopping and profiling are the operator's: viewers only look.
      const operator = role === "operator";
      for (const id of ["leak-start", "leak-stop", "leak-every"]) {
        $(id).hidden = !operator;
      }
      $("flame-run").closest(".flame-box").hidden = !operator;
      shown = true;
      refresh();
    },
    hide() {
      shown = false;
      clearTimeout(timer);
    },
  };
})();
