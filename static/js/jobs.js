// Polls a job's status once a second and updates the progress bar, its caption, the failure
// in words, the result, the metrics table and the log. The words come from the server
// (training/views.py), so the page says the same before and after a poll.
(function () {
  "use strict";
  var root = document.getElementById("job");
  if (!root) { return; }
  var url = root.dataset.statusUrl;
  var finished = ["succeeded", "failed", "cancelled"];

  function eta(job) {
    if (job.status !== "running" || !job.started_at || job.progress <= 0 || job.progress >= 1) { return ""; }
    var elapsed = (Date.now() - Date.parse(job.started_at)) / 1000;
    var left = elapsed * (1 - job.progress) / job.progress;
    return "· about " + Math.max(1, Math.round(left)) + " s left";
  }

  // The same caption as Job.progress_words.
  function words(job) {
    var pct = Math.round(job.progress * 100);
    var step = job.progress_message ? " while " + job.progress_message : "";
    if (job.status === "failed") { return "Failed at " + pct + " %" + step; }
    if (job.status === "cancelled") { return "Cancelled at " + pct + " %" + step; }
    if (job.status === "queued") { return "Waiting for a worker"; }
    if (job.status === "succeeded") { return "Finished"; }
    return job.progress_message || "Running";
  }

  function show(id, visible) {
    var el = document.getElementById(id);
    if (el) { el.hidden = !visible; }
    return el;
  }

  function renderMetrics(rows, done) {
    var table = show("job-metrics", rows.length > 0);
    show("job-no-metrics", rows.length === 0).textContent = done
      ? "This job recorded no metrics." : "Metrics appear when the job finishes.";
    var body = table.querySelector("tbody");
    body.textContent = "";
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = row[0];
      var td = document.createElement("td");
      td.textContent = row[1];
      tr.appendChild(th);
      tr.appendChild(td);
      body.appendChild(tr);
    });
  }

  function render(job) {
    var status = document.getElementById("job-status");
    status.textContent = job.status;
    status.className = "status status-" + job.status;
    var bar = document.getElementById("job-progress");
    bar.value = job.progress;
    bar.className = "job-bar is-" + job.status;
    document.getElementById("job-percent").textContent = Math.round(job.progress * 100) + "%";
    var caption = document.getElementById("job-progress-words");
    caption.className = "job-progress-words is-" + job.status;
    caption.firstChild.textContent = words(job) + " ";
    document.getElementById("job-eta").textContent = eta(job);
    document.getElementById("job-log").textContent = job.log_tail || "No log lines.";

    show("job-error", !!job.reason);
    document.getElementById("job-reason").textContent = job.reason || "";
    show("job-advice", !!job.advice).querySelector("span").textContent = job.advice || "";
    show("job-traceback", !!job.traceback).querySelector("pre").textContent = job.traceback || "";

    var outcome = job.outcome;
    show("job-outcome", !!outcome);
    document.getElementById("job-outcome-text").textContent = outcome ? outcome.text : "";
    var link = show("job-outcome-link", !!(outcome && outcome.link)).querySelector("a");
    link.href = outcome && outcome.link ? outcome.link : "#";
    link.textContent = outcome ? outcome.link_text : "";

    renderMetrics(job.metric_rows || [], finished.indexOf(job.status) !== -1);
    // A finished job can no longer be cancelled: drop the button drawn while it ran.
    var cancel = document.getElementById("job-cancel");
    if (cancel && finished.indexOf(job.status) !== -1) { cancel.hidden = true; }
  }

  function poll() {
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (job) {
        render(job);
        if (finished.indexOf(job.status) === -1) { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  poll();
})();
