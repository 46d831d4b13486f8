// Vigil dashboard: applies filters without a reload (the URL keeps them, so links can be shared
// and the back button works), and follows the cluster live through server-sent events. The
// page works without it too: the filter form is a plain GET form.
"use strict";

(function () {
  const main = document.getElementById("main");
  if (!main) return;
  const page = main.dataset.page;
  const live = document.getElementById("live");
  const defaultColumns = ["fixed", "workloads", "detected"];

  // queryOf is the URL query of the filter form, without empty values and default columns.
  function queryOf(form) {
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (value !== "") params.append(name, value);
    }
    const cols = params.getAll("col");
    if (cols.length === defaultColumns.length && defaultColumns.every((c) => cols.includes(c))) {
      params.delete("c");
      params.delete("col");
    }
    if (params.get("sort") === "severity") params.delete("sort");
    const text = params.toString();
    return text ? "?" + text : "";
  }

  let pending = null;
  // refresh replaces the results with the server's for the current URL.
  async function refresh() {
    if (pending) pending.abort();
    pending = new AbortController();
    const partial = page === "detail" ? "detail" : "results";
    const search = new URLSearchParams(location.search);
    search.set("partial", partial);
    try {
      const response = await fetch(location.pathname + "?" + search.toString(), { signal: pending.signal, headers: { Accept: "text/html" } });
      const target = document.getElementById(partial);
      if (target) target.innerHTML = await response.text();
      if (page === "list") updateCounts();
    } catch (error) {
      if (error.name !== "AbortError") setLive(false);
    }
  }

  // restore replaces the filter form and the results with those of the server's page for the
  // current URL, as after back or forward; the form keeps its listeners. A response without the
  // form (a session that expired, an error page) is shown as a whole page instead.
  async function restore(form) {
    if (pending) pending.abort();
    pending = new AbortController();
    try {
      const response = await fetch(location.pathname + location.search, { signal: pending.signal, headers: { Accept: "text/html" } });
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      const freshForm = fresh.getElementById("filters");
      const freshResults = fresh.getElementById("results");
      const results = document.getElementById("results");
      if (!response.ok || !freshForm || !freshResults || !results) {
        location.reload();
        return;
      }
      form.innerHTML = freshForm.innerHTML;
      results.innerHTML = freshResults.innerHTML;
      updateCounts();
    } catch (error) {
      if (error.name !== "AbortError") setLive(false);
    }
  }

  // updateCounts copies the counts per severity of the results into the severity chips.
  function updateCounts() {
    const summary = document.querySelector("#results .summary");
    if (!summary) return;
    for (const span of document.querySelectorAll("[data-count]")) {
      span.textContent = summary.dataset[span.dataset.count] || "0";
    }
  }

  function setLive(on) {
    if (!live) return;
    live.textContent = on ? "Live" : "Reconnecting…";
    live.classList.toggle("off", !on);
  }

  const form = document.getElementById("filters");
  if (form) {
    let timer = null;
    const apply = () => {
      const query = queryOf(form);
      if (query !== location.search) history.pushState(null, "", "/" + query);
      refresh();
    };
    form.addEventListener("submit", (event) => { event.preventDefault(); apply(); });
    form.addEventListener("change", (event) => { if (event.target.id !== "q") apply(); });
    form.addEventListener("input", (event) => {
      if (event.target.id !== "q" && event.target.type !== "number") return;
      clearTimeout(timer);
      timer = setTimeout(apply, 250);
    });
    // Back and forward: the server's page for that URL fills in the form and the results.
    window.addEventListener("popstate", () => restore(form));
  }

  if ("EventSource" in window) {
    const events = new EventSource("/events");
    events.addEventListener("open", () => setLive(true));
    events.addEventListener("error", () => setLive(false));
    events.addEventListener("change", () => refresh());
  }
})();
