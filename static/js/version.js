// While a version is training or validating, polls its job and reloads the page when the job
// ends, so the contributor sees the checks and metrics without reloading by hand.
(function () {
  "use strict";
  var root = document.getElementById("version-watch");
  if (!root) { return; }
  var url = root.dataset.statusUrl;
  var finished = ["succeeded", "failed", "cancelled"];
  var progress = document.getElementById("watch-progress");
  var message = document.getElementById("watch-message");
  var first = true;

  function poll() {
    if (!url) { return; }
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (job) {
        progress.value = job.progress;
        message.textContent = job.progress_message || job.status;
        if (finished.indexOf(job.status) === -1) {
          first = false;
          setTimeout(poll, 1500);
        } else if (!first) {
          window.location.reload();
        } else {
          // The job ended before this page was drawn, yet the version still looks busy:
          // reloading would not help, so say so instead of looping.
          message.textContent = "job " + job.status + (job.error ? ": " + job.error : "") +
            "; the version has not been updated yet.";
        }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  poll();
})();
