/* The status page of provider-fallback. Plain JavaScript, no build step, nothing from the network
 * but this gateway: it polls /status (providers, states, metrics) and /status/history (timeline,
 * latency, fallback log) and redraws in place. The admin token lives in `adminToken` only: never in
 * a URL, localStorage, sessionStorage or a cookie. Every text from the service goes into the page
 * as text (textContent), never as HTML. */
(function () {
  "use strict";

  const ROOT = document.documentElement.dataset.root || "./";
  const STATUS_EVERY_MS = 3000;
  const historyEveryMs = () => (hours <= 1 ? 10000 : hours <= 24 ? 15000 : 60000); // a week costs more
  const STATES = ["healthy", "degraded", "cooldown", "probing", "unhealthy", "disabled", "unconfigured"];
  const HOURS = [1, 6, 24, 168];

  let adminToken = null; // typed into the page; forgotten on reload
  let status = null;
  let statusAt = 0; // performance.now() when `status` arrived: countdowns tick from there
  let history = null;
  let hours = pickHours(new URLSearchParams(location.search).get("hours"));
  let historyTimer = null;
  let seenFallbacks = null;
  const charts = new Map(); // provider -> {plot, key}

  const $ = (id) => document.getElementById(id);

  function pickHours(raw) {
    const h = Number.parseInt(raw || "24", 10);
    return HOURS.includes(h) ? h : 24;
  }

  /* el("div", {class: "x", title: "..."}, child, "text", ...): children are nodes or plain text. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // ------------------------------------------------------------------ formatting

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  function ms(value) {
    if (value === null || value === undefined) return "–";
    return value >= 1000 ? (value / 1000).toFixed(value >= 10000 ? 0 : 1) + " s" : Math.round(value) + " ms";
  }

  function pct(value) {
    return value === null || value === undefined ? "–" : (value >= 99.95 && value < 100 ? "99.9" : value.toFixed(1)) + "%";
  }

  function clock(epoch, withDate) {
    const d = new Date(epoch * 1000);
    const time = d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false});
    if (!withDate) return time;
    return d.toLocaleDateString([], {month: "short", day: "numeric"}) + " " + time;
  }

  function isoEpoch(text) {
    return text ? Date.parse(text) / 1000 : null;
  }

  function words(code) { // "probe_failed:service_unavailable" -> "probe failed: service unavailable"
    return String(code || "").replace(/_/g, " ").replace(/:(?=\S)/g, ": ");
  }

  function cut(text, n) {
    return text && text.length > n ? text.slice(0, n - 1) + "…" : text || "";
  }

  // ------------------------------------------------------------------ fetching

  async function getJSON(path) {
    const resp = await fetch(ROOT + path, {cache: "no-store", credentials: "omit"});
    if (!resp.ok) throw new Error(path + ": HTTP " + resp.status);
    return resp.json();
  }

  async function pollStatus() {
    try {
      if (!document.hidden || status === null) {
        status = await getJSON("status");
        statusAt = performance.now();
        renderProviders();
        renderSummary(null);
        const count = status.fallback_events_last_24h;
        if (seenFallbacks !== null && count !== seenFallbacks) refreshHistory(); // a new fallback: show it now
        seenFallbacks = count;
      }
    } catch (err) {
      renderSummary(err);
    } finally {
      setTimeout(pollStatus, STATUS_EVERY_MS);
    }
  }

  async function refreshHistory() {
    clearTimeout(historyTimer);
    try {
      if (!document.hidden || history === null) {
        history = await getJSON("status/history?hours=" + hours);
        renderTimeline();
        renderCharts();
        renderFallbacks();
        if (status) renderProviders(); // cards show the window's TTFT and the current state's reason
      }
    } catch (err) {
      renderSummary(err);
    } finally {
      historyTimer = setTimeout(refreshHistory, historyEveryMs());
    }
  }

  // ------------------------------------------------------------------ header

  function renderSummary(err) {
    const summary = $("summary");
    if (err) {
      summary.textContent = "can't reach the service (" + err.message + "); retrying…";
      summary.className = "bad";
      return;
    }
    if (!status) return;
    const all = Object.values(status.providers);
    const serving = all.filter((p) => p.state === "healthy" || p.state === "degraded").length;
    const recovery = status.avg_recovery_time_seconds;
    summary.className = "muted";
    summary.textContent = serving + " of " + all.length + " providers serving · " +
      status.fallback_events_last_24h + " fallback" + (status.fallback_events_last_24h === 1 ? "" : "s") +
      " in 24 h" + (recovery === null ? "" : " · average recovery " + duration(recovery)) +
      " · updated " + clock(isoEpoch(status.generated_at) || Date.now() / 1000);
  }

  // ------------------------------------------------------------------ provider cards

  function stat(label, value, note, title) {
    return el("div", {title: title}, el("dt", {text: label}), el("dd", {}, value, note ? el("small", {text: " " + note}) : null));
  }

  function countdown(seconds) {
    return el("b", {"data-left": seconds, text: duration(seconds)});
  }

  function timer(p) {
    if (p.state === "probing") return el("p", {class: "timer"}, "recovery probe in flight");
    if (p.cooldown_remaining_s === null && p.next_probe_in_s === null) return null;
    const parts = [];
    if (p.cooldown_remaining_s !== null) parts.push("cooldown ends in ", countdown(p.cooldown_remaining_s));
    if (p.next_probe_in_s !== null) {
      if (parts.length) parts.push(" · ");
      parts.push("next probe in ", countdown(p.next_probe_in_s));
    }
    return el("p", {class: "timer"}, ...parts);
  }

  function lastBand(name, upstream) {
    const h = history && history.providers[name];
    const series = h && (upstream ? (h.deployments[upstream] || {}).bands : h.bands);
    return series && series.length ? series[series.length - 1] : null;
  }

  function why(p, band) {
    const bits = [];
    if (p.detail) bits.push(p.detail);
    if (band && band.reason && band.state === p.state) {
      bits.push((band.reason === "restart" ? "as the service started" : words(band.reason)) + " · since " + clock(band.from, true));
    }
    return bits.length ? el("p", {class: "why"}, bits.join(" · ")) : null;
  }

  function lastError(err) {
    if (!err) return null;
    const code = err.status === null || err.status === undefined ? "" : " " + err.status;
    return el("div", {class: "error", title: err.message},
      el("b", {text: words(err.category) + code}), " ", cut(err.message, 180),
      el("span", {class: "muted"}, " · " + clock(isoEpoch(err.at), true)));
  }

  function deployments(name, p) {
    const entries = Object.entries(p.deployments || {});
    if (!entries.length) return null;
    return el("ul", {class: "deps"}, ...entries.map(([model, d]) => {
      const extra = [];
      if (d.cooldown_remaining_s !== null && d.cooldown_remaining_s !== undefined) extra.push("back in ", countdown(d.cooldown_remaining_s));
      if (d.next_probe_in_s !== null && d.next_probe_in_s !== undefined) extra.push(extra.length ? " · probe in " : "probe in ", countdown(d.next_probe_in_s));
      const err = d.last_error ? cut("last error: " + words(d.last_error.category) + " · " + d.last_error.message, 120) : null;
      return el("li", {class: "s-" + d.state, "data-deployment": model},
        el("span", {class: "model", text: model}), el("span", {class: "pill", text: d.state}),
        ...extra, err ? el("span", {class: "extra", text: err, title: d.last_error.message}) : null);
    }));
  }

  function headroom(p) {
    // Rate limits: configured rpm/tpm and what the provider's headers last said (GET /status).
    const rows = (p.headroom || []).filter((h) => h.rpm || h.tpm || h.reported);
    if (!rows.length) return null;
    return el("ul", {class: "deps headroom"}, ...rows.map((h) => {
      const bits = [];
      if (h.rpm) bits.push((h.last_minute ? h.last_minute.requests : 0) + " / " + h.rpm + " rpm");
      if (h.tpm) bits.push((h.last_minute ? h.last_minute.tokens : 0) + " / " + h.tpm + " tpm");
      const req = h.reported && h.reported.requests;
      if (req && req.remaining !== null) bits.push(req.remaining + (req.limit ? " of " + req.limit : "") + " requests left");
      const tok = h.reported && h.reported.tokens;
      if (tok && tok.remaining !== null) bits.push(tok.remaining + " tokens left");
      const held = h.skipped_for_s > 0;
      return el("li", {class: held ? "s-cooldown" : "s-healthy", "data-headroom": h.model},
        el("span", {class: "model", text: h.model}), el("span", {class: "pill", text: held ? "no headroom" : "headroom"}),
        bits.join(" · "), held ? el("span", {class: "extra"}, "skipped for ", countdown(h.skipped_for_s)) : null);
    }));
  }

  function actions(name, p) {
    const bar = el("div", {class: "actions", hidden: adminToken === null});
    const add = (action, label, when) => {
      if (when) bar.append(el("button", {type: "button", "data-action": action, "data-provider": name, text: label}));
    };
    add("disable", "Disable", p.state !== "disabled");
    add("enable", "Enable", p.state !== "healthy");
    add("probe", "Probe now", p.state !== "disabled" && p.state !== "unconfigured");
    return bar;
  }

  function card(name, p) {
    const m = p.metrics || {};
    const h = history && history.providers[name];
    const score = p.reliability_score;
    return el("article", {class: "card s-" + p.state, "data-provider": name},
      el("div", {class: "card-head"},
        el("h3", {text: name}), el("span", {class: "prio", text: "priority " + p.priority}),
        el("span", {class: "pill", text: p.state})),
      why(p, lastBand(name, null)),
      timer(p),
      el("dl", {class: "stats"},
        stat("reliability", score === null ? "–" : (100 * score).toFixed(1) + "%",
          p.reliability_checks ? "· " + p.reliability_checks + " checks" : "no checks yet",
          "health checks: healthy 1, degraded 0.5, out of routing 0"),
        stat("uptime 24 h", pct(m.uptime_percent)),
        stat("success", pct(m.success_rate_percent), m.requests_total ? "of " + m.requests_total : ""),
        stat("latency p50", ms(m.p50_latency_ms), null, "over the last answers (a stream: to its first token)"),
        stat("latency p95", ms(m.p95_latency_ms)),
        stat("ttft p50 · p95", h && h.ttft_p50_ms !== null ? ms(h.ttft_p50_ms) : "–",
          h && h.ttft_p95_ms !== null ? "· " + ms(h.ttft_p95_ms) : "", "time to first token of streams in the window")),
      lastError(p.last_error),
      deployments(name, p),
      headroom(p),
      actions(name, p));
  }

  function renderProviders() {
    const box = $("providers");
    const cards = Object.entries(status.providers).map(([name, p]) => card(name, p));
    box.replaceChildren(...cards);
    markReady();
  }

  function tick() {
    if (!status) return;
    const gone = (performance.now() - statusAt) / 1000;
    for (const node of document.querySelectorAll("[data-left]")) {
      node.textContent = duration(Number(node.dataset.left) - gone);
    }
  }

  // ------------------------------------------------------------------ admin

  function notice(text, bad) {
    const box = $("notice");
    box.textContent = text;
    box.className = "notice" + (bad ? " bad" : "");
    box.hidden = false;
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => { box.hidden = true; }, 8000);
  }

  function setToken(value) {
    adminToken = value;
    $("token").value = "";
    $("token").hidden = value !== null;
    $("token-use").textContent = value === null ? "Unlock" : "Lock admin";
    for (const bar of document.querySelectorAll(".actions")) bar.hidden = value === null;
  }

  async function admin(name, action) {
    if (adminToken === null) return;
    if (action === "disable" && !window.confirm("Take " + name + " out of routing until enabled?")) return;
    try {
      const resp = await fetch(ROOT + "admin/providers/" + encodeURIComponent(name) + "/" + action, {
        method: "POST", cache: "no-store", credentials: "omit",
        headers: {"Authorization": "Bearer " + adminToken},
      });
      const body = await resp.json().catch(() => ({}));
      if (!resp.ok) {
        const message = (body.error && body.error.message) || "HTTP " + resp.status;
        notice(name + " " + action + ": " + message, true);
        if (resp.status === 401 || resp.status === 403) setToken(null);
        return;
      }
      notice(action === "probe"
        ? name + ": " + body.tier + " probe " + (body.ok ? "passed" : "failed") + ", now " + body.state
        : name + " " + action + "d, now " + body.state, action === "probe" && !body.ok);
    } catch (err) {
      notice(name + " " + action + ": " + err.message, true);
    }
    status = await getJSON("status").catch(() => status);
    statusAt = performance.now();
    renderProviders();
  }

  // ------------------------------------------------------------------ timeline

  function tickStep(span, wanted) {
    const steps = [600, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
    return steps.find((s) => span / s <= wanted) || 86400;
  }

  function axis(from, to) {
    const span = to - from;
    const box = el("div", {class: "tl-axis", "aria-hidden": "true"});
    const narrow = window.innerWidth < 640;
    const step = tickStep(span, narrow ? 3 : 8);
    const edge = narrow ? 16 : 6; // percent kept clear for the labels at both ends
    const offset = new Date().getTimezoneOffset() * 60;
    let t = Math.ceil((from - offset) / step) * step + offset;
    for (; t < to; t += step) {
      const left = ((t - from) / span) * 100;
      if (left < edge || left > 100 - edge) continue;
      const d = new Date(t * 1000);
      const label = step >= 86400 ? d.toLocaleDateString([], {weekday: "short", day: "numeric"})
        : d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", hour12: false});
      const tickLabel = el("span", {text: label});
      tickLabel.style.left = left + "%";
      box.append(tickLabel);
    }
    const back = Math.round(span / 3600);
    const first = el("span", {class: "first", text: "−" + (back >= 48 ? back / 24 + " d" : back + " h")});
    first.style.left = "0";
    const last = el("span", {class: "last", text: "now"});
    last.style.left = "100%";
    box.append(first, last);
    return box;
  }

  function bar(series, bands, fallbacks, from, to, restarts, dep) {
    const span = to - from || 1;
    const box = el("div", {class: "tl-bar" + (dep ? " dep" : ""), "data-series": series, role: "img",
      "aria-label": series + ": " + bands.map((b) => b.state).join(", ")});
    for (const b of bands) {
      const node = el("div", {class: "band s-" + b.state,
        title: b.state + " " + clock(b.from, true) + " – " + clock(b.to, true) + (b.reason ? " · " + words(b.reason) : "")});
      node.style.left = ((b.from - from) / span) * 100 + "%";
      node.style.width = ((b.to - b.from) / span) * 100 + "%";
      box.append(node);
    }
    for (const at of restarts) {
      const node = el("div", {class: "restart", title: "service started " + clock(at, true)});
      node.style.left = ((at - from) / span) * 100 + "%";
      box.append(node);
    }
    for (const at of fallbacks) {
      const node = el("div", {class: "mark", title: "fallback at " + clock(at, true)});
      node.style.left = ((at - from) / span) * 100 + "%";
      box.append(node);
    }
    return box;
  }

  function renderTimeline() {
    const box = $("timeline");
    const rows = [];
    const {from, to} = history;
    for (const [name, h] of Object.entries(history.providers)) {
      rows.push(el("div", {class: "tl-label", text: name}), bar(name, h.bands, h.fallbacks, from, to, history.restarts, false));
      for (const [model, d] of Object.entries(h.deployments)) {
        rows.push(el("div", {class: "tl-label dep", text: model, title: name + " / " + model}),
          bar(name + "/" + model, d.bands, [], from, to, [], true));
      }
    }
    rows.push(el("div"), axis(from, to));
    box.replaceChildren(...rows);
    $("timeline-title").textContent = "Timeline · last " + (hours >= 48 ? hours / 24 + " days" : hours + " h");
    const legend = STATES.map((s) => el("span", {class: "s-" + s}, el("i"), s));
    legend.push(el("span", {}, el("i", {class: "mark-key"}), "fallback"), el("span", {}, el("i", {class: "gap-key"}), "not observed"));
    $("legend").replaceChildren(...legend);
    markReady();
  }

  // ------------------------------------------------------------------ latency charts

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function chartData(h) {
    const step = history.bucket_s;
    const xs = []; // every bucket of the window: an empty one is a gap in the line
    for (let t = history.from; t <= history.to; t += step) xs.push(t);
    const column = (points, i) => {
      const byBucket = new Map(points.map((p) => [Math.round((p[0] - history.from) / step), p[i]]));
      return xs.map((_, k) => (byBucket.has(k) ? byBucket.get(k) : null));
    };
    const series = [];
    if (h.latency.length) series.push(["answer p50", column(h.latency, 1), "#3b82f6", []], ["answer p95", column(h.latency, 2), "#93b8f7", [4, 3]]);
    if (h.ttft.length) series.push(["ttft p50", column(h.ttft, 1), "#a855f7", []], ["ttft p95", column(h.ttft, 2), "#d3a8fb", [4, 3]]);
    return {xs, series};
  }

  function renderCharts() {
    const box = $("charts");
    if (typeof window.uPlot !== "function") return;
    const names = Object.keys(history.providers);
    for (const name of [...charts.keys()]) {
      if (!names.includes(name)) { charts.get(name).plot.destroy(); charts.delete(name); }
    }
    const blocks = [];
    for (const name of names) {
      const {xs, series} = chartData(history.providers[name]);
      let block = box.querySelector('[data-chart="' + CSS.escape(name) + '"]');
      if (!block) block = el("div", {class: "chart", "data-chart": name}, el("h3", {text: name}), el("div", {class: "plot"}));
      blocks.push(block);
      const target = block.querySelector(".plot");
      const key = series.map((s) => s[0]).join(",");
      const existing = charts.get(name);
      if (!series.length) {
        if (existing) { existing.plot.destroy(); charts.delete(name); }
        target.replaceChildren(el("p", {class: "empty muted", text: "no answers in this window"}));
        continue;
      }
      const data = [xs, ...series.map((s) => s[1])];
      if (existing && existing.key === key) { existing.plot.setData(data); continue; }
      if (existing) existing.plot.destroy();
      target.replaceChildren();
      const axisStyle = {stroke: css("--muted"), grid: {stroke: css("--line"), width: 1}, ticks: {stroke: css("--line"), width: 1}};
      const days = history.to - history.from >= 2 * 86400;
      const xLabel = (t) => {
        const d = new Date(t * 1000);
        return days ? d.toLocaleDateString([], {weekday: "short", day: "numeric"})
          : d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", hour12: false});
      };
      const plot = new window.uPlot({
        width: Math.max(200, target.clientWidth || box.clientWidth || 300), height: 190,
        cursor: {drag: {x: false, y: false}},
        scales: {x: {time: true}, y: {range: (u, lo, hi) => [0, Math.max(hi || 0, 1) * 1.1]}},
        series: [{}, ...series.map(([label, , stroke, dash]) => ({label, stroke, width: 1.6, dash, spanGaps: false,
          points: {show: true, size: 4}, value: (u, v) => (v === null ? "–" : ms(v))}))],
        axes: [{...axisStyle, values: (u, vals) => vals.map(xLabel)},
          {...axisStyle, size: 58, values: (u, vals) => vals.map((v) => ms(v))}],
        legend: {show: true},
      }, data, target);
      charts.set(name, {plot, key});
    }
    box.replaceChildren(...blocks);
    resizeCharts();
  }

  function resizeCharts() {
    for (const [name, {plot}] of charts) {
      const target = $("charts").querySelector('[data-chart="' + CSS.escape(name) + '"] .plot');
      if (target && target.clientWidth) plot.setSize({width: target.clientWidth, height: 190});
    }
  }

  // ------------------------------------------------------------------ fallback log

  function renderFallbacks() {
    const body = $("fallbacks").querySelector("tbody");
    const rows = history.fallbacks.map((f) => el("tr", {"data-request-id": f.request_id},
      el("td", {class: "time", "data-label": "time", text: clock(f.at, hours > 24)}),
      el("td", {class: "rid", "data-label": "request"},
        el("a", {href: ROOT + "events?request_id=" + encodeURIComponent(f.request_id) + "&limit=1000",
          target: "_blank", rel: "noopener", title: "everything this request caused (/events)", text: f.request_id})),
      el("td", {class: "route", "data-label": ""}, el("b", {text: f.from}), " → ", f.to === null ? el("i", {text: "nobody left"}) : f.to),
      el("td", {"data-label": "reason", text: words(f.reason)}),
      el("td", {class: "err", "data-label": "error", title: f.error, text: cut(f.error, 160) || "–"}),
      el("td", {class: "num", "data-label": "waited", text: ms(f.waited_ms)})));
    if (!rows.length) rows.push(el("tr", {class: "empty-row"}, el("td", {colspan: 6, text: "No fallbacks in this window."})));
    body.replaceChildren(...rows);
    $("fallback-count").textContent = history.fallbacks.length + " in the window" + (history.truncated ? " (some history left out: the log is very large)" : "");
    markReady();
  }

  function markReady() {
    if (status && history) document.body.dataset.ready = "1";
  }

  // ------------------------------------------------------------------ wiring

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) admin(button.dataset.provider, button.dataset.action);
  });
  $("token-use").addEventListener("click", () => {
    if (adminToken !== null) { setToken(null); return; }
    const value = $("token").value.trim();
    if (value) setToken(value);
  });
  $("token").addEventListener("keydown", (event) => {
    if (event.key === "Enter") $("token-use").click();
  });
  $("hours").value = String(hours);
  $("hours").addEventListener("change", () => {
    hours = pickHours($("hours").value);
    const url = new URL(location.href);
    url.searchParams.set("hours", String(hours));
    window.history.replaceState(null, "", url);
    refreshHistory();
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshHistory(); });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    for (const {plot} of charts.values()) plot.destroy(); // their colours come from the theme
    charts.clear();
    if (history) renderCharts();
  });
  if (typeof ResizeObserver === "function") new ResizeObserver(resizeCharts).observe($("charts"));
  let resized = null;
  window.addEventListener("resize", () => { // the timeline's axis has fewer labels on a narrow screen
    clearTimeout(resized);
    resized = setTimeout(() => { if (history) renderTimeline(); }, 150);
  });
  setInterval(tick, 1000);
  pollStatus();
  refreshHistory();
})();
