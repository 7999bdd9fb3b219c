// The trace waterfall: <div data-waterfall="#json-block"> reads the trace from a JSON
// data block (the Content-Security-Policy allows no inline script, but a data block is
// only text). Rows are virtualised: however many spans, only those on screen are in
// the DOM, so a 5,000-span trace scrolls without freezing the tab.

const ROW = 24;
const OVERSCAN = 10;
const PALETTE = [
  "#3a7bd5", "#2a9d8f", "#e9a03b", "#8e5ad6", "#d1495b", "#4caf50", "#00838f", "#c2185b",
  "#6d4c41", "#5c6bc0", "#9e9d24", "#f06292",
];

const CSS = `
.wf { border: 1px solid #d0d4da; border-radius: 4px; font-size: 13px; }
.wf-axis { display: flex; border-bottom: 1px solid #d0d4da; background: #f6f7f9; }
.wf-axis .wf-label { flex: 0 0 36%; padding: 4px 8px; font-weight: 600; }
.wf-axis .wf-ticks { position: relative; flex: 1; height: 24px; }
.wf-tick { position: absolute; top: 4px; font-size: 11px; color: #666; white-space: nowrap; }
.wf-view { overflow: auto; position: relative; }
.wf-row { position: absolute; left: 0; right: 0; height: ${ROW}px; display: flex; align-items: center; cursor: pointer; border-bottom: 1px solid #f0f1f3; }
.wf-row:hover { background: #f2f6fc; }
.wf-row.selected { background: #fff4c2; outline: 2px solid #e9a03b; outline-offset: -2px; }
.wf-row .wf-label { flex: 0 0 36%; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; padding-right: 6px; box-sizing: border-box; }
.wf-row .wf-track { position: relative; flex: 1; height: 100%; }
.wf-toggle { border: 0; background: none; width: 16px; padding: 0; cursor: pointer; font-size: 11px; }
.wf-service { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px; vertical-align: middle; }
.wf-bar { position: absolute; top: 5px; height: 14px; min-width: 2px; border-radius: 2px; opacity: .85; }
.wf-bar.critical { box-shadow: 0 0 0 2px #222; opacity: 1; }
.wf-bar.error { background-image: repeating-linear-gradient(45deg, transparent 0 4px, rgba(255,255,255,.45) 4px 8px); }
.wf-err { color: #c62828; font-weight: 700; margin-right: 3px; }
.wf-dur { position: absolute; top: 4px; font-size: 11px; color: #333; white-space: nowrap; }
.wf-details { border-top: 2px solid #d0d4da; padding: 8px 12px; max-height: 45vh; overflow: auto; }
.wf-details h3 { margin: 4px 0; font-size: 15px; }
.wf-details h4 { margin: 10px 0 4px; font-size: 13px; }
.wf-details table { border-collapse: collapse; font-size: 12px; }
.wf-details td, .wf-details th { border-bottom: 1px solid #eee; padding: 2px 8px; text-align: left; vertical-align: top; font-family: ui-monospace, monospace; word-break: break-all; }
.wf-legend { display: flex; flex-wrap: wrap; gap: 10px; padding: 6px 8px; font-size: 12px; }
.wf-tools { display: flex; gap: 12px; align-items: center; padding: 6px 8px; border-bottom: 1px solid #d0d4da; }
`;

/** Human duration from microseconds. */
export function formatMicros(us) {
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(2)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

/** Parent/child structure: roots (spans whose parent is absent) and children by start time. */
export function buildTree(spans) {
  const byId = new Map(spans.map((s) => [s.id, s]));
  const children = new Map();
  const roots = [];
  for (const span of spans) {
    if (span.parent && byId.has(span.parent) && span.parent !== span.id) {
      if (!children.has(span.parent)) children.set(span.parent, []);
      children.get(span.parent).push(span);
    } else {
      roots.push(span);
    }
  }
  const byStart = (a, b) => a.start - b.start || (a.id < b.id ? -1 : 1);
  for (const list of children.values()) list.sort(byStart);
  // Spans whose parents form a cycle hang from nothing reachable: show them as roots.
  const reached = new Set();
  const stack = [...roots];
  while (stack.length) {
    const span = stack.pop();
    reached.add(span.id);
    for (const kid of children.get(span.id) || []) if (!reached.has(kid.id)) stack.push(kid);
  }
  for (const span of spans) {
    if (!reached.has(span.id)) {
      roots.push(span);
      children.delete(span.parent);
      reached.add(span.id);
    }
  }
  roots.sort(byStart);
  return { byId, children, roots };
}

/** The spans on the critical path: from each span, the child that finished last before the
 * cursor, then the one before it, walking back to the span's start. */
export function criticalPath(tree) {
  const path = new Set();
  const stack = tree.roots.map((root) => [root, Infinity]);
  while (stack.length) {
    const [span, limit] = stack.pop();
    if (path.has(span.id)) continue;
    path.add(span.id);
    let cursor = Math.min(span.start + span.duration, limit);
    const kids = (tree.children.get(span.id) || []).slice().sort((a, b) => b.start + b.duration - (a.start + a.duration));
    let first = true;
    for (const kid of kids) {
      // A child still running at the cursor overlaps the part of the path already chosen;
      // only the last-finishing child may outlive its parent (async work).
      if (kid.start >= cursor || (!first && kid.start + kid.duration > cursor)) continue;
      first = false;
      stack.push([kid, cursor]);
      cursor = kid.start;
    }
  }
  return path;
}

/** Depth-first order of the visible spans, skipping the descendants of collapsed ones. */
export function visibleRows(tree, collapsed) {
  const rows = [];
  const stack = tree.roots.slice().reverse().map((span) => [span, 0]);
  while (stack.length) {
    const [span, depth] = stack.pop();
    rows.push({ span, depth });
    const kids = tree.children.get(span.id);
    if (kids && !collapsed.has(span.id)) {
      for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i], depth + 1]);
    }
  }
  return rows;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function keyValueTable(obj) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return el("p", { class: "muted", text: "none" });
  const body = el("tbody");
  for (const [key, value] of entries) {
    body.append(el("tr", {}, el("th", { text: key }), el("td", { text: typeof value === "string" ? value : JSON.stringify(value) })));
  }
  return el("table", {}, body);
}

function adoptStyles() {
  // A constructed stylesheet is not an inline <style>, so the CSP needs no exception.
  if (document.adoptedStyleSheets.some((sheet) => sheet.eventscopeWaterfall)) return;
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(CSS);
  sheet.eventscopeWaterfall = true;
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
}

class Waterfall {
  constructor(root, data) {
    this.root = root;
    this.data = data;
    this.total = Math.max(data.duration_us, 1);
    this.collapsed = new Set();
    this.colours = new Map();
    this.selected = null;
    this.copyButton = document.querySelector(root.dataset.copySpan || "#copy-span-link");
    this.indexSpans();
    this.render();
  }

  indexSpans() {
    this.tree = buildTree(this.data.spans);
    this.critical = criticalPath(this.tree);
    for (const span of this.data.spans) {
      if (!this.colours.has(span.service)) this.colours.set(span.service, PALETTE[this.colours.size % PALETTE.length]);
    }
  }

  /** The page carries a capped number of spans; fetch the next page and add it.
   * Returns false when it could not. */
  async loadMore() {
    const button = this.moreButton;
    if (!this.data.more || this.loading) return false;
    this.loading = true;
    if (button) {
      button.disabled = true;
      button.textContent = "Loading…";
    }
    try {
      const response = await fetch(this.data.more, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const page = await response.json();
      const known = new Set(this.data.spans.map((span) => span.id));
      for (const span of page.spans) if (!known.has(span.id)) this.data.spans.push(span);
      this.data.more = page.more;
      const scroll = this.view.scrollTop;
      this.indexSpans();
      this.render();
      this.view.scrollTop = scroll;
      this.paint(true);
      const selected = this.tree.byId.get(this.selected);
      if (selected) this.showDetails(selected);
      return true;
    } catch (error) {
      if (button) {
        button.disabled = false;
        button.textContent = `Load more spans (failed: ${error.message}; try again)`;
      }
      return false;
    } finally {
      this.loading = false;
    }
  }

  /** Select a span a link names, loading further pages of spans until it is found. */
  async selectLoading(id) {
    while (!this.select(id, true)) {
      if (!(await this.loadMore())) return false;
    }
    return true;
  }

  render() {
    const legend = el("div", { class: "wf-legend" });
    for (const [service, colour] of this.colours) {
      const swatch = el("span", { class: "wf-service" });
      swatch.style.background = colour;
      legend.append(el("span", {}, swatch, service));
    }
    const expand = el("button", { type: "button", text: "Expand all" });
    const collapse = el("button", { type: "button", text: "Collapse all" });
    expand.addEventListener("click", () => { this.collapsed.clear(); this.refresh(); });
    collapse.addEventListener("click", () => {
      for (const id of this.tree.children.keys()) this.collapsed.add(id);
      this.refresh();
    });
    const total = Math.max(this.data.span_count || 0, this.data.spans.length);
    const shown = this.data.spans.length < total ? `${this.data.spans.length} of ${total} spans shown` : `${total} spans`;
    let more = null;
    if (this.data.more) {
      more = el("button", { type: "button", class: "wf-more", text: "Load more spans", "data-load-more": "" });
      more.addEventListener("click", () => this.loadMore());
    }
    this.moreButton = more;
    const tools = el("div", { class: "wf-tools" }, expand, collapse, more,
      el("span", { class: "muted wf-count", text: `${shown} · black outline: critical path · ! error` }));
    const ticks = el("div", { class: "wf-ticks" });
    for (let i = 0; i <= 4; i++) {
      const tick = el("span", { class: "wf-tick", text: formatMicros((this.total * i) / 4) });
      tick.style.left = `${i * 25}%`;
      if (i === 4) tick.style.transform = "translateX(-100%)";
      ticks.append(tick);
    }
    const axis = el("div", { class: "wf-axis" }, el("div", { class: "wf-label", text: "Service · operation" }), ticks);
    this.view = el("div", { class: "wf-view", tabIndex: 0 });
    this.inner = el("div", { class: "wf-inner" });
    this.inner.style.position = "relative";
    this.view.append(this.inner);
    this.details = el("div", { class: "wf-details", id: "span-details" },
      el("p", { class: "muted", text: "Click a span to see its details." }));
    this.root.replaceChildren(el("div", { class: "wf" }, tools, legend, axis, this.view, this.details));
    let pending = false;
    this.view.addEventListener("scroll", () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; this.paint(); });
    });
    this.view.addEventListener("click", (event) => this.onClick(event));
    this.refresh();
  }

  refresh() {
    this.rows = visibleRows(this.tree, this.collapsed);
    this.index = new Map(this.rows.map((row, i) => [row.span.id, i]));
    this.inner.style.height = `${this.rows.length * ROW}px`;
    // Small traces need no scrolling box; big ones get at most 60% of the screen.
    this.view.style.height = `${Math.min(this.rows.length * ROW + 2, Math.max(240, window.innerHeight * 0.6))}px`;
    this.paint(true);
  }

  paint(force = false) {
    const first = Math.max(0, Math.floor(this.view.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((this.view.scrollTop + this.view.clientHeight) / ROW) + OVERSCAN);
    if (!force && first === this.painted?.[0] && last === this.painted?.[1]) return;
    this.painted = [first, last];
    const fragment = document.createDocumentFragment();
    for (let i = first; i < last; i++) fragment.append(this.rowElement(this.rows[i], i));
    this.inner.replaceChildren(fragment);
  }

  rowElement({ span, depth }, i) {
    const hasKids = this.tree.children.has(span.id);
    const toggle = el("button", {
      type: "button", class: "wf-toggle", text: hasKids ? (this.collapsed.has(span.id) ? "▸" : "▾") : "",
      "data-toggle-span": span.id,
    });
    if (!hasKids) toggle.disabled = true;
    toggle.setAttribute("aria-label", hasKids ? "Collapse or expand children" : "No children");
    const swatch = el("span", { class: "wf-service" });
    swatch.style.background = this.colours.get(span.service);
    const label = el("div", { class: "wf-label" }, toggle, swatch,
      span.error ? el("span", { class: "wf-err", text: "!", title: "error" }) : null,
      el("span", { text: `${span.service} ` }), el("span", { class: "mono", text: span.operation }),
      span.stored_events.length ? el("span", { text: " ✉", title: "carried stored events" }) : null,
      span.hops && span.hops.length ? el("span", { text: " ↪", title: "the journey continues in another trace" }) : null);
    label.style.paddingLeft = `${4 + depth * 14}px`;
    label.title = `${span.service} ${span.operation}`;
    const bar = el("div", { class: `wf-bar${this.critical.has(span.id) ? " critical" : ""}${span.error ? " error" : ""}` });
    const left = (100 * span.start) / this.total;
    bar.style.left = `${left}%`;
    bar.style.width = `${(100 * span.duration) / this.total}%`;
    bar.style.background = span.error ? "#d33" : this.colours.get(span.service);
    const duration = el("span", { class: "wf-dur", text: formatMicros(span.duration) });
    const right = left + (100 * span.duration) / this.total;
    if (right > 80) duration.style.right = `${100 - left + 0.5}%`;
    else duration.style.left = `${right + 0.5}%`;
    const row = el("div", { class: `wf-row${this.selected === span.id ? " selected" : ""}`, "data-span-id": span.id },
      label, el("div", { class: "wf-track" }, bar, duration));
    row.style.top = `${i * ROW}px`;
    return row;
  }

  onClick(event) {
    const toggle = event.target.closest("[data-toggle-span]");
    if (toggle) {
      const id = toggle.dataset.toggleSpan;
      if (this.collapsed.has(id)) this.collapsed.delete(id);
      else this.collapsed.add(id);
      this.refresh();
      return;
    }
    const row = event.target.closest("[data-span-id]");
    if (row) this.select(row.dataset.spanId, false);
  }

  select(id, scroll) {
    const span = this.tree.byId.get(id);
    if (!span) return false;
    // Open every collapsed ancestor so the span has a row.
    const seen = new Set();
    for (let parent = this.tree.byId.get(span.parent); parent && !seen.has(parent.id); parent = this.tree.byId.get(parent.parent)) {
      seen.add(parent.id);
      this.collapsed.delete(parent.id);
    }
    this.selected = id;
    this.refresh();
    if (scroll) {
      const top = this.index.get(id) * ROW;
      this.view.scrollTop = Math.max(0, top - this.view.clientHeight / 3);
      this.paint(true);
    }
    this.showDetails(span);
    const url = new URL(window.location.href);
    url.searchParams.set("span", id);
    window.history.replaceState(null, "", url);
    if (this.copyButton) {
      this.copyButton.dataset.copy = url.pathname + url.search;
      this.copyButton.hidden = false;
    }
    return true;
  }

  showDetails(span) {
    const parts = [
      el("h3", {}, el("span", { text: `${span.service} · ` }), el("span", { class: "mono", text: span.operation })),
      el("p", { text: `Span ${span.id} · ${span.kind || "unspecified kind"} · starts at +${formatMicros(span.start)} · lasts ${formatMicros(span.duration)}${this.critical.has(span.id) ? " · on the critical path" : ""}` }),
      el("p", { class: span.error ? "text-error" : "", text: `Status: ${span.status.code}${span.status.message ? ` — ${span.status.message}` : ""}` }),
    ];
    if (span.parent && !this.tree.byId.has(span.parent)) parts.push(el("p", { class: "text-warn", text: `Parent ${span.parent} was not received.` }));
    if (span.notes) parts.push(el("p", { class: "text-warn", text: `Notes: ${span.notes}` }));
    if (span.stored_events.length) {
      const list = el("ul");
      for (const stored of span.stored_events) list.append(el("li", {}, el("a", { href: stored.url, text: `${stored.subject} (${stored.url})` })));
      parts.push(el("h4", { text: "Stored events" }), list);
    }
    if (span.hops && span.hops.length) {
      // The journey: the same message or a span link continues in another trace.
      const list = el("ul");
      for (const hop of span.hops) {
        list.append(el("li", {}, el("a", { href: hop.url, text: `${hop.service} · ${hop.operation}` }),
          el("span", { class: "muted", text: ` (${hop.kind || "span"} in trace ${hop.trace_id})` })));
      }
      parts.push(el("h4", { text: "Journey continues" }), list);
    }
    if (span.message_id || span.destination) {
      parts.push(el("p", { class: "mono", text: `Message ${span.message_id || "?"} on ${span.destination || "?"}` }));
    }
    parts.push(el("h4", { text: "Tags" }), keyValueTable(span.tags));
    if (span.events.length) {
      const body = el("tbody");
      for (const event of span.events) {
        const at = event.time_us != null ? `+${formatMicros(event.time_us - this.data.start_us)}` : "";
        body.append(el("tr", {}, el("th", { text: at }), el("td", { text: event.name }), el("td", { text: JSON.stringify(event.attributes || {}) })));
      }
      parts.push(el("h4", { text: "Events" }), el("table", {}, body));
    }
    if (span.links.length) {
      const list = el("ul");
      for (const link of span.links) {
        const href = `/traces/${link.trace_id}/?span=${link.span_id}`;
        list.append(el("li", {}, el("a", { href, class: "mono", text: `${link.trace_id} / ${link.span_id}` }),
          el("span", { text: ` ${JSON.stringify(link.attributes || {})}` })));
      }
      parts.push(el("h4", { text: "Links" }), list);
    }
    parts.push(el("h4", { text: "Resource" }), keyValueTable(span.resource));
    if (span.scope) parts.push(el("p", { class: "muted", text: `Instrumentation scope: ${span.scope}` }));
    this.details.replaceChildren(...parts);
  }
}

export function initWaterfall(root) {
  const host = root.querySelector("[data-waterfall]");
  if (!host) return;
  const block = document.querySelector(host.dataset.waterfall);
  if (!block) return;
  adoptStyles();
  const waterfall = new Waterfall(host, JSON.parse(block.textContent));
  host.waterfall = waterfall;
  const wanted = new URL(window.location.href).searchParams.get("span");
  if (wanted) {
    waterfall.selectLoading(wanted).finally(() => { host.dataset.ready = "true"; });
  } else {
    host.dataset.ready = "true";
  }
}
