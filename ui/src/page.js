// heaptide's pages read fully without this script. It adds what a
// browser can do and a server cannot: local time (UTC on hover), the
// range picker in local time, auto-refresh, and on charts the value under
// the pointer, a cursor shared by every chart and drag to zoom. No
// framework and nothing fetched: it is small enough to read here.
(function () {
  "use strict";
  var pad = function (n) { return String(n).padStart(2, "0"); };
  var date = function (d) { return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()); };
  var hms = function (d) { return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()); };
  var local = function (ms) { var d = new Date(ms); return date(d) + " " + hms(d); };

  // Times: every <time datetime> in local time, UTC on hover.
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var ms = Date.parse(el.getAttribute("datetime"));
    if (isNaN(ms)) return;
    el.title = el.getAttribute("datetime") + " (UTC)";
    el.textContent = local(ms);
  });

  // Chart axes in local time.
  document.querySelectorAll("svg.chart text[data-t]").forEach(function (el) {
    var svg = el.closest("svg");
    var span = +svg.dataset.to - +svg.dataset.from;
    var d = new Date(+el.dataset.t);
    el.textContent = span > 3 * 86400e3 ? pad(d.getMonth() + 1) + "-" + pad(d.getDate())
      : span < 600e3 ? hms(d) : pad(d.getHours()) + ":" + pad(d.getMinutes());
  });

  // The range picker: its inputs show local time and send milliseconds.
  var form = document.getElementById("range");
  if (form) {
    form.querySelectorAll("input[type=datetime-local]").forEach(function (inp) {
      var ms = +inp.dataset.ms;
      if (ms) {
        var d = new Date(ms);
        inp.value = date(d) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
      }
    });
    form.addEventListener("submit", function () {
      form.querySelectorAll("input[type=datetime-local]").forEach(function (inp) {
        if (!inp.value) return;
        var hidden = document.createElement("input");
        hidden.type = "hidden";
        hidden.name = inp.name;
        hidden.value = String(new Date(inp.value).getTime());
        inp.removeAttribute("name");
        form.appendChild(hidden);
      });
    });
  }

  // Auto-refresh: kept in the URL, so a shared link refreshes too.
  var params = new URLSearchParams(location.search);
  var auto = document.getElementById("autorefresh");
  if (auto) {
    auto.checked = params.get("refresh") === "on";
    if (auto.checked) setTimeout(function () { location.reload(); }, 30000);
    auto.addEventListener("change", function () {
      if (auto.checked) params.set("refresh", "on"); else params.delete("refresh");
      location.search = params.toString();
    });
  }

  var fmt = function (v, unit) {
    var a = Math.abs(v);
    if (unit === "bytes") {
      var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
      while (a >= 1024 && i < u.length - 1) { a /= 1024; v /= 1024; i++; }
      return (i ? v.toFixed(1) : v.toFixed(0)) + " " + u[i];
    }
    if (unit === "ms") return v.toFixed(1) + " ms";
    return v.toLocaleString(undefined, { maximumFractionDigits: 1 });
  };

  // Charts: hover, shared cursor, drag to zoom.
  var svgNS = "http://www.w3.org/2000/svg";
  var make = function (svg, tag, attrs) {
    var e = document.createElementNS(svgNS, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    svg.appendChild(e);
    return e;
  };
  var charts = Array.prototype.map.call(document.querySelectorAll("svg.chart[data-from]"), function (svg) {
    var d = svg.dataset;
    return {
      svg: svg, from: +d.from, to: +d.to, x0: +d.x0, x1: +d.x1, unit: d.unit,
      series: Array.prototype.map.call(svg.querySelectorAll("polyline.series[data-points]"), function (p) {
        return { name: p.dataset.series, pts: p.dataset.points.split(" ").map(function (s) { return s.split(",").map(Number); }) };
      }),
      cursor: make(svg, "line", { "class": "cursor", y1: d.y0, y2: d.y1, stroke: "#111827", "stroke-width": 1, visibility: "hidden" }),
      sel: make(svg, "rect", { "class": "selection", y: d.y0, height: +d.y1 - +d.y0, width: 0, fill: "#2563eb", "fill-opacity": 0.15, visibility: "hidden" })
    };
  });
  if (!charts.length) return;
  var tip = document.createElement("div");
  tip.id = "tooltip";
  tip.hidden = true;
  document.body.appendChild(tip);
  var xOf = function (c, ev) {
    var r = c.svg.getBoundingClientRect();
    return (ev.clientX - r.left) * c.svg.viewBox.baseVal.width / r.width;
  };
  var timeAt = function (c, x) { return c.from + (x - c.x0) / (c.x1 - c.x0) * (c.to - c.from); };
  var xAt = function (c, t) { return c.x0 + (t - c.from) / (c.to - c.from) * (c.x1 - c.x0); };
  var nearest = function (pts, t) {
    var best = null, gap = Infinity;
    pts.forEach(function (p) { var g = Math.abs(p[0] - t); if (g < gap) { gap = g; best = p[1]; } });
    return best;
  };
  var hide = function () {
    tip.hidden = true;
    charts.forEach(function (c) { c.cursor.setAttribute("visibility", "hidden"); });
  };
  var show = function (c, t, ev) {
    charts.forEach(function (o) {
      var on = t >= o.from && t <= o.to;
      o.cursor.setAttribute("visibility", on ? "visible" : "hidden");
      if (on) { o.cursor.setAttribute("x1", xAt(o, t)); o.cursor.setAttribute("x2", xAt(o, t)); }
    });
    tip.textContent = "";
    var line = function (text, cls) { var e = document.createElement("div"); e.textContent = text; if (cls) e.className = cls; tip.appendChild(e); };
    line(local(t), "tip-time");
    c.series.forEach(function (s) { var v = nearest(s.pts, t); if (v !== null) line(s.name + ": " + fmt(v, c.unit)); });
    tip.hidden = false;
    tip.style.left = (ev.pageX + 14) + "px";
    tip.style.top = (ev.pageY + 14) + "px";
  };
  var drag = null;
  charts.forEach(function (c) {
    c.svg.addEventListener("mousemove", function (ev) {
      var x = xOf(c, ev);
      if (x < c.x0 || x > c.x1) { hide(); return; }
      show(c, timeAt(c, x), ev);
      if (drag && drag.c === c) {
        c.sel.setAttribute("x", Math.min(drag.x, x));
        c.sel.setAttribute("width", Math.abs(x - drag.x));
        c.sel.setAttribute("visibility", "visible");
      }
    });
    c.svg.addEventListener("mouseleave", hide);
    c.svg.addEventListener("mousedown", function (ev) {
      var x = xOf(c, ev);
      if (x >= c.x0 && x <= c.x1) { drag = { c: c, x: x }; ev.preventDefault(); }
    });
    c.svg.addEventListener("mouseup", function (ev) {
      if (!drag || drag.c !== c) return;
      var a = Math.min(drag.x, xOf(c, ev)), b = Math.max(drag.x, xOf(c, ev));
      drag = null;
      c.sel.setAttribute("visibility", "hidden");
      if (b - a < 4) return;
      params.delete("since");
      params.delete("window");
      params.set("from", String(Math.round(timeAt(c, Math.max(a, c.x0)))));
      params.set("to", String(Math.round(timeAt(c, Math.min(b, c.x1)))));
      location.search = params.toString();
    });
  });
})();
