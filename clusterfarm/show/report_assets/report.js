// clusterfarm report: draws the cell grids and the worker timeline from the inline JSON.
// Inlined into the HTML by clusterfarm/html_report.py; no network, no libraries.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("cf-data").textContent);
  const tip = document.getElementById("tip");
  const panel = document.getElementById("panel");
  const YEAR = -1;

  function text(tag, content, cls) {
    const el = document.createElement(tag);
    el.textContent = content;
    if (cls) el.className = cls;
    return el;
  }
  function member(m) { return m === YEAR ? "(year)" : "m" + m; }
  function seconds(ds) { return ds < 0 ? "-" : (ds / 10).toFixed(1) + " s"; }
  function showTip(ev, lines) {
    tip.textContent = lines.join("\n");
    tip.hidden = false;
    tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 300) + "px";
    tip.style.top = ev.clientY + 14 + "px";
  }
  function hideTip() { tip.hidden = true; }

  // -- the year x member grid of each task ------------------------------------------------
  function drawGrid(g, host) {
    const cols = g.members.length, rows = g.years.length;
    const cw = Math.max(2, Math.min(18, Math.floor(1000 / cols)));
    const ch = Math.max(2, Math.min(cw, Math.floor(8000 / rows)));
    const x0 = 52, y0 = 4, gap = cw >= 6 ? 1 : 0;
    const canvas = document.createElement("canvas");
    canvas.width = x0 + cols * cw + 4;
    canvas.height = y0 + rows * ch + 4;
    Object.assign(canvas.dataset, { cols, rows, cw, ch, x0, y0, task: g.task });
    canvas.className = "grid";
    const ctx = canvas.getContext("2d");
    for (const [status, color] of Object.entries(data.colors)) {
      ctx.beginPath();
      for (let i = 0; i < g.status.length; i++) {
        if (g.status[i] !== status) continue;
        const r = Math.floor(i / cols), c = i % cols;
        ctx.rect(x0 + c * cw, y0 + r * ch, cw - gap, ch - gap);
      }
      ctx.fillStyle = color;
      ctx.fill();
    }
    ctx.fillStyle = "#444";
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "middle";
    const every = Math.ceil(13 / ch);
    for (let r = 0; r < rows; r += every) ctx.fillText(g.years[r], 2, y0 + r * ch + ch / 2);
    const cellAt = (ev) => {
      const box = canvas.getBoundingClientRect();
      const c = Math.floor((ev.clientX - box.left - x0) / cw);
      const r = Math.floor((ev.clientY - box.top - y0) / ch);
      return c >= 0 && c < cols && r >= 0 && r < rows ? r * cols + c : -1;
    };
    canvas.addEventListener("mousemove", (ev) => {
      const i = cellAt(ev);
      if (i < 0) return hideTip();
      const year = g.years[Math.floor(i / cols)], m = g.members[i % cols];
      const lines = [
        `${g.task} ${year} ${member(m)}: ${data.names[g.status[i]]}`,
        `attempts ${g.attempts[i]} · worker ${g.worker[i] >= 0 ? data.workers[g.worker[i]] : "-"}`,
        `elapsed ${seconds(g.elapsed[i])} · peak RSS ${g.rss[i] >= 0 ? g.rss[i] + " MiB" : "-"}`,
      ];
      const tries = data.details[`${g.task}|${year}|${m}`];
      if (tries) {
        const last = tries[tries.length - 1];
        if (last[5]) lines.push(`error: ${last[5]}`);
        lines.push("(click for every attempt)");
      }
      showTip(ev, lines);
    });
    canvas.addEventListener("mouseleave", hideTip);
    canvas.addEventListener("click", (ev) => {
      const i = cellAt(ev);
      if (i >= 0) showAttempts(g, g.years[Math.floor(i / cols)], g.members[i % cols], i);
    });
    host.appendChild(text("div", `${g.task}: ${rows} years × ${cols} members`, "gridname"));
    const box = document.createElement("div");
    box.className = "gridbox";  // a long run scrolls inside the box, the page stays short
    box.appendChild(canvas);
    host.appendChild(box);
  }

  function showAttempts(g, year, m, i) {
    panel.replaceChildren();
    const close = text("button", "close");
    close.addEventListener("click", () => { panel.hidden = true; });
    panel.appendChild(close);
    panel.appendChild(text("h3", `${g.task} ${year} ${member(m)}: ${data.names[g.status[i]]}`));
    const tries = data.details[`${g.task}|${year}|${m}`];
    if (!tries) {
      panel.appendChild(text("p", `${g.attempts[i]} attempt(s); elapsed ${seconds(g.elapsed[i])}` +
        " (only retried or failed cells keep every attempt in the report; see clusterfarm trace)"));
    } else {
      const table = document.createElement("table");
      const head = table.insertRow();
      for (const h of ["#", "status", "worker", "started", "elapsed s", "error"]) {
        head.appendChild(text("th", h));
      }
      for (const t of tries) {
        const row = table.insertRow();
        for (const v of t) row.insertCell().textContent = v === null ? "" : v;
      }
      panel.appendChild(table);
    }
    panel.hidden = false;
  }

  // -- the timeline: one lane per worker -----------------------------------------------------
  function drawTimeline(host) {
    const tl = data.timeline;
    if (tl.mode === "empty") {
      host.appendChild(text("p", "No attempts recorded."));
      return;
    }
    const lanes = Object.keys(tl.mode === "bars" ? tl.lanes : tl.bins).map(Number).sort((a, b) => a - b);
    const label = 150, width = 900, lane = 14, top = 4;
    const canvas = document.createElement("canvas");
    canvas.width = label + width + 10;
    canvas.height = top + lanes.length * lane + 22;
    canvas.className = "timeline";
    canvas.dataset.lanes = lanes.length;
    const ctx = canvas.getContext("2d");
    const x = (t) => label + (t / tl.span) * width;
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "middle";
    const colors = Object.values(data.attemptColors);
    lanes.forEach((w, k) => {
      const y = top + k * lane;
      const name = w >= 0 ? data.workers[w].replace("clusterfarm.worker.", "") : "?";
      ctx.fillStyle = "#444";
      ctx.fillText(name.slice(0, 24), 2, y + lane / 2);
      ctx.fillStyle = "#f2f2f2";
      ctx.fillRect(label, y, width, lane - 2);
      if (tl.mode === "bars") {
        for (const [s, e, code] of tl.lanes[w]) {
          ctx.fillStyle = colors[code];
          ctx.fillRect(x(s), y, Math.max(1, x(e) - x(s)), lane - 2);
        }
      } else {
        const bw = width / tl.bins[w].length;
        tl.bins[w].forEach((busy, b) => {
          ctx.fillStyle = `rgba(46, 158, 72, ${busy})`;
          ctx.fillRect(label + b * bw, y, Math.ceil(bw), lane - 2);
        });
      }
    });
    const axisY = top + lanes.length * lane + 10;
    ctx.fillStyle = "#444";
    for (let k = 0; k <= 5; k++) {
      const t = (tl.span * k) / 5;
      ctx.fillText(t.toFixed(t < 10 ? 2 : 0) + " s", Math.min(x(t), label + width - 40), axisY);
    }
    canvas.addEventListener("mousemove", (ev) => {
      const box = canvas.getBoundingClientRect();
      const k = Math.floor((ev.clientY - box.top - top) / lane);
      const t = ((ev.clientX - box.left - label) / width) * tl.span;
      if (k < 0 || k >= lanes.length || t < 0) return hideTip();
      const w = lanes[k];
      showTip(ev, [`${w >= 0 ? data.workers[w] : "?"} at ${t.toFixed(2)} s`]);
    });
    canvas.addEventListener("mouseleave", hideTip);
    host.appendChild(canvas);
    const what = tl.mode === "bars" ? "one bar per attempt" : "share of time busy (many attempts)";
    host.appendChild(text("p", `invocation ${tl.invocation}: ${what}; colours: ` +
      Object.keys(data.attemptColors).join(", "), "note"));
  }

  const grids = document.getElementById("grids");
  for (const g of data.grids) drawGrid(g, grids);
  drawTimeline(document.getElementById("timeline"));
  document.body.dataset.ready = "1";
})();
