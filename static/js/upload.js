// Posts a multipart form with XMLHttpRequest so the browser can show upload progress.
// Without JavaScript the form is a plain POST and the server answers with HTML.
(function () {
  "use strict";
  var forms = document.querySelectorAll("form[data-upload]");
  if (!forms.length || !window.FormData || !window.XMLHttpRequest) { return; }

  function csrfToken(form) {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function errorMessage(xhr) {
    try {
      var body = JSON.parse(xhr.responseText);
      if (body && body.error && body.error.message) { return body.error.message; }
    } catch (ignored) { /* not JSON: fall through */ }
    if (xhr.status === 413) { return "The upload is larger than the server accepts."; }
    return "Upload failed (HTTP " + xhr.status + ").";
  }

  Array.prototype.forEach.call(forms, function (form) {
    var bar = form.querySelector(".upload-progress");
    var progress = bar.querySelector("progress");
    var percent = bar.querySelector(".upload-percent");
    var error = form.querySelector(".upload-error");
    var button = form.querySelector("button[type=submit]");

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action || window.location.href);
      xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
      xhr.setRequestHeader("X-CSRFToken", csrfToken(form));
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = function (e) {
        if (!e.lengthComputable) { return; }
        var pct = Math.round(100 * e.loaded / e.total);
        progress.value = pct;
        percent.textContent = pct < 100 ? pct + "%" : "100%, checking the files…";
      };
      xhr.onload = function () {
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (ignored) { body = null; }
        if (xhr.status >= 200 && xhr.status < 300 && body && body.redirect) {
          window.location.assign(body.redirect);
          return;
        }
        fail(errorMessage(xhr));
      };
      xhr.onerror = function () { fail("The connection was lost during the upload."); };
      error.hidden = true;
      bar.hidden = false;
      progress.value = 0;
      percent.textContent = "0%";
      button.disabled = true;
      xhr.send(new FormData(form));
    });

    function fail(message) {
      bar.hidden = true;
      button.disabled = false;
      error.textContent = message;
      error.hidden = false;
    }
  });
})();
