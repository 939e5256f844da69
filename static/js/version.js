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

// The try-it box: posts the texts to POST /api/v1/predict/ (the production gating model) and
// shows each answer with the experts it was routed to, marking this version when it is one.
// Without JavaScript the same form posts to the predict playground.
(function () {
  "use strict";
  var root = document.getElementById("try-it");
  var form = document.getElementById("try-it-form");
  if (!root || !form || !window.fetch) { return; }
  var table = document.getElementById("try-it-result");
  var body = table.querySelector("tbody");
  var error = document.getElementById("try-it-error");
  var button = form.querySelector("button[type=submit]");
  var versionId = root.dataset.versionId;

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) { td.className = className; }
    row.appendChild(td);
    return td;
  }

  function show(texts, predictions) {
    body.textContent = "";
    predictions.forEach(function (p, i) {
      var row = document.createElement("tr");
      cell(row, texts[i]);
      cell(row, p.domain + ": " + p.label + " (" + p.confidence.toFixed(3) + ")");
      var routed = cell(row, "");
      p.experts.forEach(function (e, j) {
        var span = document.createElement("span");
        span.textContent = (j ? ", " : "") + e.name + " " + e.weight.toFixed(2);
        if (String(e.expert) === versionId) { span.className = "this-version"; span.title = "this version"; }
        routed.appendChild(span);
      });
      body.appendChild(row);
    });
    table.hidden = false;
  }

  function fail(message) {
    table.hidden = true;
    error.textContent = message;
    error.hidden = false;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var texts = form.elements.texts.value.split("\n").filter(function (t) { return t.trim(); });
    if (!texts.length) { fail("Type a text to classify first."); return; }
    error.hidden = true;
    button.disabled = true;
    fetch(root.dataset.predictUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json",
                 "X-CSRFToken": form.elements.csrfmiddlewaretoken.value },
      body: JSON.stringify({ texts: texts })
    }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (data) {
        if (r.ok && data && data.predictions) { show(texts, data.predictions); return; }
        var message = data && data.error && data.error.message;
        fail(message ? "No answer: " + message.replace(/\.$/, "") + "." :
          "The prediction failed (HTTP " + r.status + "); try again in a moment.");
      });
    }).catch(function () {
      fail("The connection was lost before an answer came; try again.");
    }).then(function () { button.disabled = false; });
  });
})();
