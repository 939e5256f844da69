// Polls a job's status once a second and updates the progress bar, ETA and log.
(function () {
  "use strict";
  var root = document.getElementById("job");
  if (!root) { return; }
  var url = root.dataset.statusUrl;
  var finished = ["succeeded", "failed", "cancelled"];
  var firstSeen = null;

  function eta(job) {
    if (job.status !== "running" || !job.started_at || job.progress <= 0 || job.progress >= 1) { return ""; }
    var elapsed = (Date.now() - Date.parse(job.started_at)) / 1000;
    var left = elapsed * (1 - job.progress) / job.progress;
    return "· about " + Math.max(1, Math.round(left)) + " s left";
  }

  function render(job) {
    var status = document.getElementById("job-status");
    status.textContent = job.status;
    status.className = "status status-" + job.status;
    document.getElementById("job-progress").value = job.progress;
    document.getElementById("job-percent").textContent = Math.round(job.progress * 100) + "%";
    document.getElementById("job-eta").textContent = eta(job);
    document.getElementById("job-message").textContent = job.progress_message;
    document.getElementById("job-log").textContent = job.log_tail;
    document.getElementById("job-metrics").textContent =
      Object.keys(job.metrics || {}).length ? JSON.stringify(job.metrics, null, 2) : "";
    var error = document.getElementById("job-error");
    error.hidden = !job.error;
    error.textContent = job.error;
    // A finished job can no longer be cancelled: drop the button drawn while it ran.
    var cancel = document.getElementById("job-cancel");
    if (cancel && finished.indexOf(job.status) !== -1) { cancel.hidden = true; }
  }

  function poll() {
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (job) {
        if (firstSeen === null) { firstSeen = Date.now(); }
        render(job);
        if (finished.indexOf(job.status) === -1) { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  poll();
})();
