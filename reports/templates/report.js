// Renders every chart from the one JSON payload, and wires the page's filters.
// Datasets are shared by reference: a chart's spec gets a pointer, not a copy.
(function () {
  "use strict";
  var payload = JSON.parse(document.getElementById("gm-payload").textContent);
  var data = {};
  Object.keys(payload.datasets).forEach(function (name) {
    var table = payload.datasets[name];
    var decode = table.columns.map(function (column) { return table.categories[column]; });
    data[name] = table.rows.map(function (row) {
      var record = {};
      for (var i = 0; i < table.columns.length; i++) {
        var value = row[i];
        record[table.columns[i]] = decode[i] && value !== null ? decode[i][value] : value;
      }
      return record;
    });
  });
  var views = [];
  var pending = payload.charts.length;
  function settled() {
    pending -= 1;
    if (pending === 0) document.body.dataset.chartsDone = "1";
  }
  if (pending === 0) document.body.dataset.chartsDone = "1";
  payload.charts.forEach(function (chart) {
    var el = document.getElementById("chart-" + chart.id);
    if (!el) { settled(); return; }
    var spec = chart.spec;
    spec.datasets = {};
    chart.datasets.forEach(function (name) { spec.datasets[name] = data[name]; });
    // No "open in editor" action: that would leave the page for the network.
    vegaEmbed(el, spec, {renderer: "svg", actions: {export: true, source: false,
                                                   compiled: false, editor: false}})
      .then(function (result) { views.push(result.view); el.dataset.rendered = "1"; settled(); })
      .catch(function (error) {
        el.dataset.rendered = "error";
        el.textContent = "This chart failed to render: " + error;
        console.error(error);
        settled();
      });
  });

  function checked(selector) {
    return Array.prototype.filter.call(document.querySelectorAll(selector),
      function (box) { return box.checked; }).map(function (box) { return box.value; });
  }
  // labels as the charts hold them (charts.py: vega_text)
  function asCharted(values) {
    return values.map(function (v) {
      return v.replace(/[\u2028\u2029]/g, " ").replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, "\ufffd");
    });
  }
  function applyFilters() {
    var workload = document.getElementById("pick-workload").value;
    var interps = checked(".pick-interpreter");
    var execs = checked(".pick-executor");
    document.querySelectorAll("section.workload").forEach(function (section) {
      section.classList.toggle("hidden", workload !== "" && section.dataset.workload !== workload);
    });
    document.querySelectorAll(".overview tbody tr").forEach(function (row) {
      row.classList.toggle("hidden", workload !== "" && row.dataset.workload !== workload);
    });
    document.querySelectorAll("[data-interpreter]").forEach(function (el) {
      el.classList.toggle("hidden", interps.indexOf(el.dataset.interpreter) < 0);
    });
    // the numbers tables carry no data attributes (10,000 rows): columns 1 and 2 say it
    document.querySelectorAll("table.numbers tbody tr").forEach(function (row) {
      var hide = interps.indexOf(row.cells[0].textContent) < 0 ||
                 execs.indexOf(row.cells[1].textContent) < 0;
      row.classList.toggle("hidden", hide);
    });
    views.forEach(function (view) {
      try {
        view.signal("show_interpreters", asCharted(interps));
        view.signal("show_executors", asCharted(execs));
        view.runAsync();
      } catch (e) { /* a chart without these parameters */ }
    });
  }
  document.querySelectorAll("#controls select, #controls input").forEach(function (input) {
    input.addEventListener("change", applyFilters);
  });
})();
