// mp3converter's pages, enhanced: uploads with a progress bar per file (drop or pick; large files by tus, resumable),
// live job status by polling each running job's JSON (the browser's cache sends If-None-Match and the server answers 304 while nothing
// changed), a confirmation before deleting, and a button that copies a new API key. Without this script every page still works by
// reloading (and the key can be selected and copied by hand).
"use strict";

(function () {
  const ACTIVE = ["queued", "fetching", "processing"];
  const POLL_MS = 1500;
  let labels = {};

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $$(selector, root) { return Array.from((root || document).querySelectorAll(selector)); }
  function field(root, name) { return $('[data-field="' + name + '"]', root); }

  function readLabels() {
    const data = document.getElementById("status-labels");
    if (data) labels = JSON.parse(data.textContent);
  }

  function megabytes(bytes) { return (bytes / 1048576).toFixed(1) + " MB"; }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    const total = Math.round(seconds), h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    const pad = (n) => String(n).padStart(2, "0");
    return h ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
  }

  function size(bytes) {
    if (!bytes) return "";
    if (bytes < 1024) return bytes + " bytes";
    if (bytes < 1048576) return (bytes / 1024).toFixed(1) + " KB";
    return megabytes(bytes);
  }

  // Shows a job as its JSON says: status, progress, error, which actions apply.
  function showJob(root, job) {
    root.dataset.status = job.status;
    const status = field(root, "status");
    if (status) {
      status.textContent = labels[job.status] || job.status;
      status.className = "status status-" + job.status;
    }
    const progress = field(root, "progress");
    if (progress) {
      progress.value = job.progress;
      progress.textContent = job.progress + "%";
      progress.hidden = !ACTIVE.includes(job.status);
    }
    const error = field(root, "error");
    if (error) {
      const message = job.error && job.status !== "cancelled" && job.status !== "expired" ? job.error.message : "";
      error.textContent = message;
      error.hidden = !message;
    }
    const durationCell = field(root, "duration");
    if (durationCell) durationCell.textContent = duration(job.duration_seconds);
    const sizeCell = field(root, "size");
    if (sizeCell) sizeCell.textContent = size(job.mp3_size);
    $$("[data-when]", root).forEach(function (element) {
      const show = element.dataset.when.split(" ").includes(job.status);
      element.hidden = !show;
      if ("disabled" in element && element.tagName === "INPUT") element.disabled = !show;
    });
  }

  // Polls one job until it is finished. The answer comes from the browser's cache when the server says 304.
  function watch(root) {
    const url = root.dataset.jobUrl;
    if (!url || root.dataset.watching) return;
    root.dataset.watching = "yes";
    const initial = root.dataset.status;
    function poll() {
      fetch(url, { headers: { Accept: "application/json" }, cache: "no-cache", credentials: "same-origin" })
        .then(function (response) {
          if (response.status === 404) { root.dataset.status = "gone"; return null; }
          if (!response.ok) throw new Error("status " + response.status);
          return response.json();
        })
        .then(function (job) {
          if (!job) return;
          showJob(root, job);
          if (ACTIVE.includes(job.status)) {
            window.setTimeout(poll, POLL_MS);
          } else if ("reloadWhenFinished" in root.dataset && ACTIVE.includes(initial)) {
            window.location.reload();  // the page shows the player or the error in full
          }
        })
        .catch(function () { window.setTimeout(poll, POLL_MS * 4); });
    }
    if (ACTIVE.includes(root.dataset.status)) poll();
  }

  // One sentence from an API error answer: {"code", "detail"}, {field: [messages]}, or not JSON at all.
  function errorSentence(status, text) {
    let body = null;
    try { body = JSON.parse(text); } catch (e) { body = null; }
    if (body && typeof body.detail === "string") return body.detail;
    if (body && typeof body === "object") {
      const messages = [];
      Object.keys(body).forEach(function (key) {
        const value = body[key];
        (Array.isArray(value) ? value : [value]).forEach(function (message) { messages.push(String(message)); });
      });
      if (messages.length) return messages.join(" ");
    }
    const byStatus = {
      0: "The upload was interrupted. Check your connection and try again.",
      413: "The file is larger than this service accepts.",
      415: "This is not a media file this service can read.",
      429: "You have reached a limit on your account. Please try again later.",
      502: "The service is not answering right now. Please try again later.",
      503: "The service is busy or partly down right now; nothing was kept. Please try again later.",
      504: "The service took too long to answer. Please try again later."
    };
    return byStatus[status] || "The upload failed (HTTP " + status + "). Please try again.";
  }

  function fromTemplate(form, id) {
    return form.dataset[id].replace("00000000-0000-0000-0000-000000000000", "ID");
  }

  // The options chosen on the form, as the API takes them (blank fields mean "the default").
  function chosenOptions(form) {
    const options = {};
    new FormData(form).forEach(function (value, key) {
      if (!["files", "source_url", "csrfmiddlewaretoken"].includes(key) && value !== "") options[key] = String(value);
    });
    return options;
  }

  // One file to upload, or (`file` null) the URL in the form's link field to import.
  function upload(form, file, url) {
    const list = document.getElementById("uploads");
    const row = document.getElementById("upload-row").content.firstElementChild.cloneNode(true);
    if (!file) file = { name: url, size: 0 };
    $(".name", row).textContent = file.name;
    list.appendChild(row);
    const empty = document.getElementById("uploads-empty");
    if (empty) empty.hidden = true;
    const bar = field(row, "upload"), bytes = field(row, "bytes");
    bar.setAttribute("aria-label", "Upload of " + file.name);
    field(row, "progress").setAttribute("aria-label", "Conversion of " + file.name);
    bytes.textContent = url ? "" : "0 MB of " + megabytes(file.size);

    const shown = {
      progress: function (loaded) {
        if (url) return;  // a URL import: the bytes are fetched by the service, shown on the job
        bar.value = Math.round((100 * loaded) / file.size);
        bytes.textContent = megabytes(Math.min(loaded, file.size)) + " of " + megabytes(file.size);
      },
      accepted: function (job) {
        bar.value = 100;
        bytes.textContent = url ? "" : megabytes(file.size) + " sent";
        const page = field(row, "page"), download = field(row, "download");
        page.href = fromTemplate(form, "pageUrl").replace("ID", job.id);
        page.hidden = false;
        download.href = fromTemplate(form, "downloadUrl").replace("ID", job.id);
        row.dataset.jobUrl = fromTemplate(form, "jobUrl").replace("ID", job.id);
        showJob(row, job);
        watch(row);
      },
      refused: function (sentence) {
        row.classList.add("failed");
        bar.hidden = true;
        field(row, "status").textContent = "Not converted";
        const error = field(row, "error");
        error.textContent = sentence;
        error.hidden = false;
      }
    };
    if (!url && window.tus && window.tus.isSupported && file.size > Number(form.dataset.tusThresholdBytes)) {
      uploadResumable(form, file, shown);
    } else {
      uploadWhole(form, file, url, shown);
    }
  }

  // Small files, and a URL to import: one multipart POST.
  function uploadWhole(form, file, url, shown) {
    const data = new FormData();
    const options = chosenOptions(form);
    Object.keys(options).forEach(function (key) { data.append(key, options[key]); });
    if (url) data.append("source_url", url);
    else data.append("file", file, file.name);

    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.uploadUrl);
    xhr.setRequestHeader("X-CSRFToken", form.elements.csrfmiddlewaretoken.value);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable) shown.progress(event.loaded * file.size / event.total);
    });
    xhr.addEventListener("loadend", function () {
      if (xhr.status === 202) shown.accepted(JSON.parse(xhr.responseText));
      else shown.refused(errorSentence(xhr.status, xhr.responseText));
    });
    xhr.send(data);
  }

  // Large files: tus (tus-js-client, mp3converter/static/vendor/), in chunks under the proxy's body cap. A dropped
  // connection is retried from the server's offset; after a reload the same file (with the same options) resumes,
  // since the client keeps each upload's URL in localStorage under the file's fingerprint.
  function uploadResumable(form, file, shown) {
    const options = chosenOptions(form);
    const metadata = Object.assign({filename: file.name}, options);
    let conversionUrl = null;
    const resumable = new window.tus.Upload(file, {
      endpoint: form.dataset.tusUrl,
      chunkSize: Number(form.dataset.tusChunkBytes),
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000, 30000],
      metadata: metadata,
      headers: {"X-CSRFToken": form.elements.csrfmiddlewaretoken.value},
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      fingerprint: function (file) {
        const parts = ["mp3converter", file.name, file.type, file.size, file.lastModified, JSON.stringify(options)];
        return Promise.resolve(parts.join("-"));
      },
      onProgress: function (sent) { shown.progress(sent); },
      onAfterResponse: function (request, response) {
        // The last PATCH (or a HEAD once finished) names the conversion the upload became.
        const location = response.getHeader("Conversion-Location");
        if (location) conversionUrl = location;
      },
      onSuccess: function () {
        if (!conversionUrl) { shown.refused(errorSentence(0, "")); return; }
        window.fetch(conversionUrl, {headers: {Accept: "application/json"}, credentials: "same-origin"})
          .then(function (response) { return response.json(); })
          .then(shown.accepted)
          .catch(function () { shown.refused(errorSentence(0, "")); });
      },
      onError: function (error) {
        const response = error.originalResponse;
        shown.refused(response ? errorSentence(response.getStatus(), response.getBody()) : errorSentence(0, ""));
      }
    });
    resumable.findPreviousUploads().then(function (previous) {
      if (previous.length) resumable.resumeFromPreviousUpload(previous[0]);
      resumable.start();
    });
  }

  function setUpConvertForm() {
    const form = document.getElementById("convert-form");
    if (!form) return;
    const input = form.elements.files;
    const zone = document.getElementById("dropzone");
    function send(files) {
      Array.from(files).forEach(function (file) { upload(form, file); });
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const link = form.elements.source_url, url = link ? link.value.trim() : "";
      if (!input.files.length && !url) {
        input.focus();
        zone.classList.add("invalid");
        return;
      }
      zone.classList.remove("invalid");
      send(input.files);
      input.value = "";
      if (url) {
        upload(form, null, url);
        link.value = "";
      }
    });
    // Files dropped anywhere on the page are uploaded (the browser would otherwise open them in place of the page).
    ["dragenter", "dragover"].forEach(function (name) {
      document.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
    });
    document.addEventListener("dragleave", function (event) {
      if (!event.relatedTarget) zone.classList.remove("dragging");  // left the window
    });
    document.addEventListener("drop", function (event) {
      event.preventDefault();
      zone.classList.remove("dragging");
      if (event.dataTransfer && event.dataTransfer.files.length) send(event.dataTransfer.files);
    });
  }

  function setUpConfirmations() {
    document.addEventListener("submit", function (event) {
      const form = event.target;
      if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  // A [data-copy] button copies the value of the field it names, and says so in its aria-describedby status.
  function setUpCopyButtons() {
    $$("[data-copy]").forEach(function (button) {
      const source = document.getElementById(button.dataset.copy);
      const said = document.getElementById(button.getAttribute("aria-describedby"));
      if (!source || !said) return;
      button.hidden = false;
      button.addEventListener("click", function () {
        // The Clipboard API needs a secure context (HTTPS or the loopback address); elsewhere, the older command.
        const copied = navigator.clipboard && window.isSecureContext
          ? navigator.clipboard.writeText(source.value)
          : new Promise(function (resolve, reject) {
            source.select();
            if (document.execCommand("copy")) resolve(); else reject(new Error("copy refused"));
          });
        copied.then(
          function () { said.textContent = button.dataset.copied; },
          function () { source.select(); said.textContent = button.dataset.copyFailed; }
        );
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    readLabels();
    setUpConfirmations();
    setUpCopyButtons();
    setUpConvertForm();
    $$("[data-job-url]").forEach(watch);
  });
})();
