// MNEMOS console: live updates from /ui/events, /v1/events' handler (EventSource; the session cookie, Path=/ui, authenticates it).
"use strict";
(function () {
  const query = document.body.dataset.events;
  const live = document.getElementById("live");
  if (!query || !live || !window.EventSource) { if (live) live.hidden = true; return; }  // a page without live data
  let reloading = null;
  const reloadSoon = () => { if (!reloading) reloading = setTimeout(() => location.reload(), 800); };
  const cell = (row, cls, text) => { const c = row.querySelector("." + cls); if (c) { c.textContent = text; c.className = cls + " " + cls + "-" + text.toLowerCase(); } };
  const pad = (n) => String(n).padStart(2, "0");
  const when = (ts) => { const d = new Date(ts * 1000); return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()); };
  const esc = (s) => String(s == null ? "—" : s).replace(/[&<>"]/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[ch]));

  function onModel(ev) {
    const name = ev.subject.replace(/^model\//, "");
    const row = document.querySelector('tr[data-model="' + CSS.escape(name) + '"]');
    if (!row || ev.data.status === "deleted") { reloadSoon(); return; }
    const phase = ev.data.phase || (ev.data.status || "").replace(/^./, (c) => c.toUpperCase());
    const span = row.querySelector(".phase");
    if (span) { span.textContent = phase; span.className = "phase phase-" + phase.toLowerCase(); }
    const gen = row.querySelector(".generation");
    if (gen) {  // the Model's generation, and the one serving while a rollout is on its way
      const own = gen.dataset.generation, served = ev.data.served_generation;
      gen.textContent = served != null && String(served) !== own ? own + " (serving " + served + ")" : own;
    }
    const reason = row.querySelector(".reason");
    if (reason) reason.textContent = !ev.data.reason || ev.data.reason === "Ready" ? "" : ev.data.reason;
    const replicas = row.querySelector(".replicas");
    if (replicas) {
      const desired = ev.data.desired_replicas;
      const ready = ev.data.ready_replicas != null ? ev.data.ready_replicas : (phase === "Ready" ? desired : 0);
      replicas.textContent = (ready == null ? "—" : ready) + " / " + (desired == null ? "—" : desired);
    }
  }

  function onJob(ev) {
    const id = ev.subject.replace(/^job:/, "");
    if (ev.type === "job.log") {
      const pre = document.getElementById("logs");
      if (!pre) return;
      // The page was rendered with lines 1..data-lines of data-attempt: their events repeat them.
      if (String(ev.data.attempt) === pre.dataset.attempt && ev.data.n <= Number(pre.dataset.lines)) return;
      pre.append(ev.data.line + "\n"); pre.scrollTop = pre.scrollHeight;
      return;
    }
    const status = ev.type.slice(4);
    const single = document.getElementById("job-status");
    if (single) {
      single.textContent = status; single.className = "status status-" + status;
      const cancel = document.getElementById("cancel");
      if (cancel && ["succeeded", "failed", "cancelled"].includes(status)) cancel.remove();
      return;
    }
    const table = document.querySelector("#jobs tbody");
    if (!table) return;
    let row = table.querySelector('tr[data-job="' + CSS.escape(id) + '"]');
    if (!row) {
      // A new job is listed only where it matches the page's filters, as the page was rendered.
      const only = document.getElementById("jobs").dataset;
      const wanted = only.status === "dead" ? "failed" : only.status;  // dead: failed, its attempts spent
      if ((only.queue && ev.data.queue !== only.queue) || (wanted && status !== wanted) ||
          (only.owner && ev.owner !== only.owner)) return;
      row = document.createElement("tr");
      row.dataset.job = id;
      row.innerHTML = '<td><a href="/ui/jobs/' + encodeURIComponent(id) + '">' + esc(id) + "</a></td><td>" + esc(ev.data.function) +
        "</td><td>" + esc(ev.data.queue) + "</td><td>" + esc(ev.owner) + '</td><td class="status"></td><td class="when">' +
        esc(when(ev.data.submittedAt || ev.ts)) + "</td>";
      table.prepend(row);
      const none = document.getElementById("no-jobs"); if (none) none.remove();
    }
    cell(row, "status", status);
  }

  function onRun(ev) {
    const single = document.getElementById("run-status");
    if (!single) { const row = document.querySelector('tr[data-run="' + CSS.escape(ev.data.id) + '"]'); if (row) cell(row, "status", ev.data.status); else reloadSoon(); return; }
    single.textContent = ev.data.status; single.className = "status status-" + ev.data.status;
    for (const [name, step] of Object.entries(ev.data.steps || {})) {
      const node = document.querySelector('g[data-node="' + CSS.escape(name) + '"]');
      if (node) {
        node.setAttribute("class", "node status-" + step.status);
        const took = step.finished && step.started ? " · " + (step.finished - step.started).toFixed(1) + " s" : "";
        node.querySelector(".sub").textContent = step.status + (step.cached ? " · cache hit" : "") + took;
      }
      const row = document.querySelector('tr[data-step="' + CSS.escape(name) + '"]');
      if (row) {
        cell(row, "status", step.status);
        const duration = row.querySelector(".duration");
        if (duration && step.finished && step.started) duration.textContent = (step.finished - step.started).toFixed(2) + " s";
        const cache = row.querySelector(".cache"); if (cache) cache.textContent = step.cached ? "hit" : "—";
      }
    }
  }

  function onMessage(msg) {
    lastId = msg.lastEventId || lastId;
    const ev = JSON.parse(msg.data);
    const family = ev.type.split(".")[0];
    if (family === "model") onModel(ev);
    else if (family === "resource" && ev.data.kind === "Model" && document.querySelector("tr[data-model]") !== null) reloadSoon();
    else if (family === "job") onJob(ev);
    else if (family === "run") onRun(ev);
  }

  // Resume from the id the page was rendered at, so no event falls between the render and the stream.
  let lastId = document.body.dataset.since || "";
  let retryIn = 5000;
  function retryLater(text) {
    live.textContent = text;
    setTimeout(connect, retryIn);
    retryIn = Math.min(retryIn * 2, 60000);
  }
  function connect() {
    const source = new EventSource("/ui/events?" + query + (lastId ? "&last_event_id=" + encodeURIComponent(lastId) : ""));
    source.onopen = () => { live.textContent = "live"; live.classList.add("on"); retryIn = 5000; };
    source.onerror = () => {
      live.classList.remove("on");
      if (source.readyState !== EventSource.CLOSED) { live.textContent = "reconnecting…"; return; }  // the browser retries
      // The gateway refused the stream, and a browser neither retries a refusal nor tells the page its
      // status. 401: the session ended while the stream was away (the laptop slept past its expiry, it was
      // revoked or signed out in another tab): this page's own URL answers 401 too, so go to sign in.
      // Otherwise (429: this key's streams are all open elsewhere; 503: the bus is restarting) retry, backing off.
      fetch(location.href, {credentials: "same-origin", cache: "no-store"}).then((page) => {
        if (page.status === 401) { live.textContent = "session ended"; location.assign("/ui/signin"); }
        else retryLater("live updates paused; retrying…");
      }, () => retryLater("reconnecting…"));  // the gateway cannot be reached at all
    };
    source.addEventListener("reset", reloadSoon);
    source.addEventListener("dropped", reloadSoon);  // this page fell behind the feed: render it again
    // The session ended (its key was revoked, it expired, it was signed out) while this stream was open.
    source.addEventListener("revoked", () => { source.close(); live.textContent = "session ended"; location.assign("/ui/signin"); });
    source.onmessage = onMessage;
  }
  connect();
})();
