/* conveyor run report: draws the conveyor.report/1 document embedded in this page.
   Everything is drawn synchronously when the page loads; #report-check gets what was drawn
   (counts of lanes, bars, failures, graph nodes) as data attributes, for tests and scripts. */
(function () {
  "use strict";
  var T0 = performance.now();
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var S = D.strings, R = D.runs, A = D.attempts, F = D.flow;
  var COLORS = { Completed: "#2e9e5b", Cached: "#7cc7a1", Failed: "#d64545",
    TimedOut: "#e8912d", Crashed: "#8e44ad", Cancelled: "#8a8f98", NotRun: "#c9b458",
    Running: "#3b82f6", Pending: "#b8bec9", Retrying: "#f0b429" };
  var TYPES = { COMPLETED: "#2e9e5b", FAILED: "#d64545", CRASHED: "#8e44ad",
    CANCELLED: "#8a8f98", RUNNING: "#3b82f6" };
  var GRAPH_RUNS = 300, LANE = 16, LABEL = 210, AXIS = 22, MAX_CANVAS = 30000;
  var check = document.getElementById("report-check");

  function str(i) { return i < 0 ? null : S[i]; }
  function color(name) { return COLORS[name] || "#9aa1ad"; }
  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }
  function fmt(ms) {
    if (ms == null) return "–";
    if (ms < 1000) return ms.toFixed(1) + " ms";
    if (ms < 120000) return (ms / 1000).toFixed(2) + " s";
    return (ms / 60000).toFixed(1) + " min";
  }
  function row(table, cells, head) {
    var tr = el("tr");
    cells.forEach(function (c, k) {
      var tag = head === true || (head === "first" && k === 0) ? "th" : "td";
      var td = el(tag, c.attrs || null, c.text != null ? c.text : c);
      tr.appendChild(td);
    });
    table.appendChild(tr);
    return tr;
  }
  function canvasFor(id, width, height) {
    var c = $(id), ratio = window.devicePixelRatio || 1;
    height = Math.min(height, MAX_CANVAS);
    c.width = Math.round(width * ratio); c.height = Math.round(height * ratio);
    c.style.width = width + "px"; c.style.height = height + "px";
    var g = c.getContext("2d");
    g.scale(ratio, ratio);
    g.font = "11px system-ui, sans-serif";
    return g;
  }

  /* ---- summary ------------------------------------------------------------------------ */
  var nRuns = R.name.length, nAttempts = A.run.length;
  function summary() {
    var st = $("flow-state");
    st.appendChild(el("span", { "class": "badge", style: "background:" +
      (COLORS[F.state] || TYPES[F.state_type] || "#777") }, F.state));
    st.appendChild(el("span", null, "  " + F.flow_run_label));
    var body = $("summary-body");
    if (F.interrupted) {
      body.appendChild(el("div", { "class": "banner warn", id: "interrupted" },
        "Interrupted by " + F.interrupted + ": the flow run did not finish; this report shows " +
        "what happened until then."));
    } else if (F.state_type !== "COMPLETED") {
      body.appendChild(el("div", { "class": "banner bad" }, "The flow run ended " + F.state +
        (F.message ? ": " + F.message : ".")));
    }
    var t = el("table", { id: "flow-table" });
    row(t, [{ text: "Flow" }, F.name], "first");
    row(t, [{ text: "Flow run" }, F.run], "first");
    row(t, [{ text: "State" }, { text: F.state, attrs: { id: "flow-state-cell" } }], "first");
    if (F.message) row(t, [{ text: "Message" }, F.message], "first");
    row(t, [{ text: "Runner" }, F.runner], "first");
    row(t, [{ text: "Runner options" }, JSON.stringify(F.options)], "first");
    if (F.dashboard) row(t, [{ text: "Dashboard" }, F.dashboard], "first");
    row(t, [{ text: "Started" }, F.started_at || "–"], "first");
    row(t, [{ text: "Elapsed" }, { text: fmt(F.elapsed_ms), attrs: { id: "elapsed" } }], "first");
    row(t, [{ text: "Task runs" }, { text: String(sumCounts()), attrs: { id: "total-runs" } }],
      "first");
    body.appendChild(t);
    var states = Object.keys(D.counts).sort();
    var c = el("table", { id: "counts" });
    row(c, ["Task", "Runs"].concat(states, ["Median", "Longest"]).map(function (h) {
      return { text: h };
    }), true);
    D.tasks.forEach(function (task) {
      var cells = [task.name, { text: String(task.runs), attrs: { "class": "num" } }];
      states.forEach(function (s) {
        cells.push({ text: String(task.states[s] || 0), attrs: { "class": "num",
          "data-task": task.name, "data-state": s } });
      });
      cells.push({ text: fmt(task.median_ms), attrs: { "class": "num" } });
      cells.push({ text: fmt(task.longest_ms), attrs: { "class": "num" } });
      row(c, cells);
    });
    body.appendChild(c);
  }
  function sumCounts() { var n = 0; for (var k in D.counts) n += D.counts[k]; return n; }
  F.flow_run_label = F.run + " on " + F.runner + (F.elapsed_ms != null ? ", " +
    fmt(F.elapsed_ms) : "");

  /* ---- timeline ----------------------------------------------------------------------- */
  var tMax = F.elapsed_ms || 0;
  for (var i = 0; i < nAttempts; i++) if (A.end[i] != null && A.end[i] > tMax) tMax = A.end[i];
  tMax = Math.max(tMax, 1);
  var plotWidth = Math.max(600, ($("timeline-wrap").clientWidth || 1200) - LABEL - 20);
  function xOf(ms) { return LABEL + (ms / tMax) * plotWidth; }
  var lanes = [], laneOf = {}, bars = [];
  var perRun = new Int32Array(nRuns);
  for (i = 0; i < nAttempts; i++) perRun[A.run[i]]++;

  function timeline() {
    var legend = $("legend");
    var seen = {};
    for (var i = 0; i < nAttempts; i++) seen[str(A.state[i])] = 1;
    Object.keys(seen).sort().forEach(function (s) {
      legend.appendChild(el("span", { style: "--c:" + color(s) }, s));
    });
    legend.appendChild(el("span", { style: "--c:#1d2330" }, "attempt after a retry (dark tick)"));
    if (!D.recorded) {
      $("timeline-wrap").appendChild(el("p", { "class": "muted" },
        "This flow run did not record its task runs (record_runs), so there is no timeline."));
    }
    var names = [];
    for (i = 0; i < nAttempts; i++) {
      if (A.start[i] == null) continue;
      var w = str(A.where[i]) || "unknown";
      if (!(w in laneOf)) { laneOf[w] = -1; names.push(w); }
    }
    names.sort(function (a, b) { return a.localeCompare(b, undefined, { numeric: true }); });
    names.forEach(function (w, k) { laneOf[w] = k; lanes.push(w); });
    for (i = 0; i < nAttempts; i++) if (A.start[i] != null) bars.push(i);
    bars.sort(function (a, b) { return A.start[a] - A.start[b]; });
    var byLane = lanes.map(function () { return []; });
    bars.forEach(function (b) { byLane[laneOf[str(A.where[b]) || "unknown"]].push(b); });
    var height = AXIS + lanes.length * LANE + 4;
    var g = canvasFor("timeline-canvas", LABEL + plotWidth + 10, height);
    axis(g, height);
    lanes.forEach(function (name, k) {
      var y = AXIS + k * LANE;
      if (k % 2) { g.fillStyle = "#f4f5f8"; g.fillRect(0, y, LABEL + plotWidth + 10, LANE); }
      g.fillStyle = "#1d2330";
      g.fillText(name.length > 34 ? name.slice(0, 33) + "…" : name, 4, y + 11);
    });
    var drawn = 0, runsWithBars = {};
    byLane.forEach(function (list, k) {
      var y = AXIS + k * LANE + 2;
      list.forEach(function (b) {
        var x0 = xOf(A.start[b]), x1 = xOf(A.end[b] == null ? tMax : A.end[b]);
        g.fillStyle = color(str(A.state[b]));
        g.fillRect(x0, y, Math.max(1, x1 - x0 > 3 ? x1 - x0 - 1 : x1 - x0), LANE - 4);
        if (A.number[b] > 1) { g.fillStyle = "#1d2330"; g.fillRect(x0, y - 1, 2, LANE - 2); }
        drawn++;
        runsWithBars[A.run[b]] = 1;
      });
    });
    hover(byLane);
    var started = 0;
    for (var r = 0; r < nRuns; r++) if (perRun[r] && hasStart(r)) started++;
    if (D.recorded && started < nRuns) {
      var never = {};
      for (r = 0; r < nRuns; r++) {
        if (!hasStart(r)) never[str(R.state[r])] = (never[str(R.state[r])] || 0) + 1;
      }
      $("timeline-wrap").insertAdjacentElement("afterend", el("p", { "class": "muted",
        id: "never-started" }, (nRuns - started) + " run(s) never started, so have no bar: " +
        Object.keys(never).sort().map(function (s) { return never[s] + " " + s; }).join(", ") + "."));
    }
    check.dataset.bars = String(drawn);
    check.dataset.lanes = String(lanes.length);
    check.dataset.laneNames = JSON.stringify(lanes);
    check.dataset.startedRuns = String(started);
    check.dataset.runsWithBars = String(Object.keys(runsWithBars).length);
  }
  var startedRun = null;
  function hasStart(r) {
    if (startedRun === null) {
      startedRun = new Uint8Array(nRuns);
      for (var i = 0; i < nAttempts; i++) if (A.start[i] != null) startedRun[A.run[i]] = 1;
    }
    return startedRun[r] === 1;
  }
  function axis(g, height) {
    g.fillStyle = "#5b6474"; g.strokeStyle = "#dde1e8";
    var step = niceStep(tMax / 8);
    for (var t = 0; t <= tMax + 1e-9; t += step) {
      var x = xOf(t);
      g.beginPath(); g.moveTo(x + 0.5, AXIS - 4); g.lineTo(x + 0.5, height); g.stroke();
      g.fillText(fmt(t), x + 2, 12);
    }
  }
  function niceStep(raw) {
    var p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-3))));
    var m = raw / p;
    return p * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
  }
  function describe(b) {
    var r = A.run[b], end = A.end[b] == null ? null : A.end[b];
    var lines = [
      R.name[r] + "  (" + str(R.task[r]) + ")",
      "state: " + str(R.state[r]) + (perRun[r] > 1 ? "  ·  this attempt: " + str(A.state[b]) : ""),
      "attempt " + A.number[b] + " of " + perRun[r],
      "duration: " + fmt(end == null ? null : end - A.start[b]),
      "where: " + (str(A.where[b]) || "unknown")
    ];
    if (R.reason[r] >= 0) lines.push("reason: " + str(R.reason[r]));
    if (R.message[r] >= 0) lines.push("message: " + str(R.message[r]));
    return lines.join("\n");
  }
  function hover(byLane) {
    var c = $("timeline-canvas"), tip = $("tooltip");
    function find(ev) {
      var box = c.getBoundingClientRect();
      var x = ev.clientX - box.left, y = ev.clientY - box.top;
      var k = Math.floor((y - AXIS) / LANE);
      if (k < 0 || k >= byLane.length || x < LABEL) return -1;
      var list = byLane[k], best = -1, tol = 3 * tMax / plotWidth;
      var t = (x - LABEL) / plotWidth * tMax;
      var lo = 0, hi = list.length;
      while (lo < hi) { var mid = (lo + hi) >> 1; if (A.start[list[mid]] <= t + tol) lo = mid + 1; else hi = mid; }
      for (var j = lo - 1; j >= 0 && j >= lo - 200; j--) {
        var b = list[j], e = A.end[b] == null ? tMax : A.end[b];
        if (e + tol >= t) { best = b; break; }
      }
      return best;
    }
    c.addEventListener("mousemove", function (ev) {
      var b = find(ev);
      if (b < 0) { tip.hidden = true; return; }
      tip.textContent = describe(b); tip.hidden = false;
      tip.style.left = (ev.clientX + 14) + "px"; tip.style.top = (ev.clientY + 12) + "px";
    });
    c.addEventListener("mouseleave", function () { tip.hidden = true; });
    c.addEventListener("click", function (ev) {
      var b = find(ev);
      $("selected").textContent = b < 0 ? "" : describe(b);
    });
    // report.html#run=NAME opens with the last attempt of run NAME selected.
    var wanted = decodeURIComponent((location.hash.match(/^#run=(.+)$/) || [])[1] || "");
    for (var i = nAttempts - 1; wanted && i >= 0; i--) {
      if (R.name[A.run[i]] === wanted) { $("selected").textContent = describe(i); break; }
    }
  }

  /* ---- concurrency -------------------------------------------------------------------- */
  function concurrency() {
    var ev = [];
    for (var i = 0; i < nAttempts; i++) {
      if (A.start[i] == null) continue;
      ev.push([A.start[i], 1], [A.end[i] == null ? tMax : A.end[i], -1]);
    }
    ev.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; });
    var pts = [[0, 0]], n = 0, peak = 0;
    ev.forEach(function (e, k) {
      n += e[1];
      if (k + 1 < ev.length && ev[k + 1][0] === e[0]) return;  // one point per moment
      peak = Math.max(peak, n); pts.push([e[0], n]);
    });
    var H = 120, g = canvasFor("concurrency-canvas", LABEL + plotWidth + 10, H + AXIS);
    axis(g, H + AXIS);
    g.fillStyle = "#1d2330";
    g.fillText("running: peak " + peak, 4, AXIS + 12);
    var scale = peak ? (H - 6) / peak : 0;
    g.beginPath(); g.moveTo(xOf(0), AXIS + H);
    var prev = 0;
    pts.forEach(function (p) {
      var x = xOf(p[0]);
      g.lineTo(x, AXIS + H - prev * scale); g.lineTo(x, AXIS + H - p[1] * scale); prev = p[1];
    });
    g.lineTo(xOf(tMax), AXIS + H - prev * scale); g.lineTo(xOf(tMax), AXIS + H); g.closePath();
    g.fillStyle = "rgba(59,130,246,0.35)"; g.fill();
    g.strokeStyle = "#3b82f6"; g.stroke();
    check.dataset.peak = String(peak);
  }

  /* ---- failures ----------------------------------------------------------------------- */
  function failures() {
    var body = $("failures-body"), shown = 0, LIMIT = 500;
    if (!D.failures.length) body.appendChild(el("p", { "class": "muted" }, "No failures."));
    D.failures.slice(0, LIMIT).forEach(function (f) {
      var box = el("div", { "class": "failure", "data-run": f.name });
      box.style.borderColor = color(f.state);
      box.appendChild(el("div", { "class": "head" }, f.name + " — " + f.state +
        (f.reason ? " (" + f.reason + ")" : "")));
      box.appendChild(el("div", { "class": "message" }, f.message));
      if (f.origin) box.appendChild(el("div", { "class": "muted" }, "raised at " + f.origin));
      if (f.traceback) {
        var det = el("details");
        det.appendChild(el("summary", null, "traceback"));
        det.appendChild(el("pre", null, f.traceback));
        box.appendChild(det);
      }
      body.appendChild(box);
      shown++;
    });
    if (D.failures.length > LIMIT) {
      body.appendChild(el("p", { "class": "muted" }, (D.failures.length - LIMIT) +
        " more failures; hover their bars in the timeline for their messages."));
    }
    check.dataset.failures = String(shown);
  }

  /* ---- dependency graph --------------------------------------------------------------- */
  function graph() {
    var perTask = nRuns > GRAPH_RUNS, nodes = [], edges = [], key = {}, i, j;
    if (!perTask) {
      for (i = 0; i < nRuns; i++) nodes.push({ label: R.name[i], state: str(R.state[i]), up: [] });
      for (i = 0; i < nRuns; i++) R.upstream[i].forEach(function (u) {
        nodes[i].up.push(u); edges.push([u, i, 1]);
      });
    } else {
      for (i = 0; i < nRuns; i++) {
        var t = str(R.task[i]);
        if (!(t in key)) { key[t] = nodes.length; nodes.push({ label: t, state: null, up: [],
          runs: 0, bad: 0 }); }
        var nd = nodes[key[t]];
        nd.runs++;
        if (str(R.state[i]) !== "Completed") nd.bad++;
      }
      var pairs = {};
      for (i = 0; i < nRuns; i++) R.upstream[i].forEach(function (u) {
        var a = key[str(R.task[u])], b = key[str(R.task[i])], p = a + ">" + b;
        pairs[p] = (pairs[p] || 0) + 1;
      });
      Object.keys(pairs).forEach(function (p) {
        var ab = p.split(">").map(Number);
        if (ab[0] !== ab[1]) nodes[ab[1]].up.push(ab[0]);
        edges.push([ab[0], ab[1], pairs[p]]);
      });
      nodes.forEach(function (nd) {
        nd.label += " ×" + nd.runs + (nd.bad ? " (" + nd.bad + " not completed)" : "");
        nd.state = nd.bad ? "Failed" : "Completed";
      });
    }
    $("graph-note").textContent = (perTask ? "More than " + GRAPH_RUNS +
      " runs: one node per task, edges counted. " : "One node per task run. ") +
      (edges.length ? "" : "No task run was given another run's future.");
    var depth = new Int32Array(nodes.length);
    for (var pass = 0; pass < nodes.length + 1; pass++) {
      var moved = false;
      for (i = 0; i < nodes.length; i++) for (j = 0; j < nodes[i].up.length; j++) {
        var d = depth[nodes[i].up[j]] + 1;
        if (d > depth[i] && d <= nodes.length) { depth[i] = d; moved = true; }
      }
      if (!moved) break;
    }
    var cols = [], pos = [];
    for (i = 0; i < nodes.length; i++) (cols[depth[i]] = cols[depth[i]] || []).push(i);
    var CW = perTask ? 260 : 170, RH = 22, rows = 0;
    cols.forEach(function (col, c) {
      col.forEach(function (n, r) { pos[n] = [10 + c * CW, 10 + r * RH]; });
      rows = Math.max(rows, col.length);
    });
    var g = canvasFor("graph-canvas", Math.max(300, 20 + cols.length * CW), 20 + rows * RH);
    g.strokeStyle = "rgba(29,35,48,0.35)";
    edges.forEach(function (e) {
      var a = pos[e[0]], b = pos[e[1]];
      if (!a || !b) return;
      g.beginPath(); g.moveTo(a[0] + CW - 30, a[1] + 8); g.lineTo(b[0], b[1] + 8); g.stroke();
      if (perTask) { g.fillStyle = "#5b6474"; g.fillText("×" + e[2], (a[0] + CW - 30 + b[0]) / 2,
        (a[1] + b[1]) / 2 + 4); }
    });
    nodes.forEach(function (nd, n) {
      var p = pos[n];
      g.fillStyle = color(nd.state); g.fillRect(p[0], p[1] + 2, 10, 12);
      g.fillStyle = "#1d2330";
      var label = nd.label.length > 34 ? nd.label.slice(0, 33) + "…" : nd.label;
      g.fillText(label, p[0] + 14, p[1] + 12);
    });
    check.dataset.graphNodes = String(nodes.length);
    check.dataset.graphEdges = String(edges.length);
    check.dataset.graphMode = perTask ? "task" : "run";
  }

  function guarded(name, fn) {
    try { fn(); } catch (err) {
      check.dataset.errors = (check.dataset.errors ? check.dataset.errors + "; " : "") +
        name + ": " + err;
      var sec = $(name);
      if (sec) sec.appendChild(el("p", { "class": "banner bad" }, "Could not draw: " + err));
    }
  }
  guarded("summary", summary);
  guarded("timeline", timeline);
  guarded("concurrency", concurrency);
  guarded("failures", failures);
  guarded("graph", graph);
  check.dataset.runs = String(nRuns);
  check.dataset.attempts = String(nAttempts);
  check.dataset.state = F.state;
  check.dataset.interrupted = F.interrupted || "";
  check.dataset.counts = JSON.stringify(D.counts);
  check.dataset.renderMs = (performance.now() - T0).toFixed(1);
  check.dataset.pageMs = performance.now().toFixed(1);
  check.dataset.done = "1";
})();
