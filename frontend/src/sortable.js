// <table class="sortable">: a click on a header sorts the first tbody by that
// column. A cell's data-sort value, when given, is sorted on instead of its text
// (sizes, durations, times). Headers with class "nosort" stay put.

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i;

function asNumber(text) {
  // Thousands separators as Django's intcomma and the browsers' locales write them.
  const cleaned = text.replace(/[,\s\u00a0\u202f]/g, "");
  return NUMBER.test(cleaned) ? Number(cleaned) : null;
}

/** Compare two sort keys: numerically when both are numbers, else as text. */
export function compareKeys(a, b) {
  const x = asNumber(a);
  const y = asNumber(b);
  if (x !== null && y !== null) return x - y;
  return collator.compare(a, b);
}

/** Row indexes in sorted order; blank keys go last either way, ties keep their order. */
export function sortOrder(keys, descending) {
  const sign = descending ? -1 : 1;
  return keys
    .map((key, index) => index)
    .sort((i, j) => {
      const blankI = keys[i] === "";
      const blankJ = keys[j] === "";
      if (blankI || blankJ) return blankI - blankJ;
      return sign * compareKeys(keys[i], keys[j]);
    });
}

function sortKey(cell) {
  if (!cell) return "";
  return (cell.dataset.sort ?? cell.textContent).trim();
}

function sortBy(header) {
  const table = header.closest("table");
  const body = table.tBodies[0];
  if (!body) return;
  const current = header.getAttribute("aria-sort");
  // Numbers are usually read biggest first; text from A.
  const descending = current ? current === "ascending" : header.classList.contains("num");
  for (const other of header.parentElement.children) other.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  const rows = [...body.rows];
  const keys = rows.map((row) => sortKey(row.cells[header.cellIndex]));
  body.append(...sortOrder(keys, descending).map((index) => rows[index]));
}

function sortableHeader(target) {
  const header = target.closest("table.sortable thead th");
  return header && !header.classList.contains("nosort") ? header : null;
}

export function initSortableTables(root) {
  for (const table of root.querySelectorAll("table.sortable")) {
    table.classList.add("sort-ready");
    for (const header of table.querySelectorAll("thead th:not(.nosort)")) header.tabIndex = 0;
  }
  root.addEventListener("click", (event) => {
    // Links inside a header keep working as links.
    if (event.target.closest("a")) return;
    const header = sortableHeader(event.target);
    if (header) sortBy(header);
  });
  root.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" && event.key !== " ") return;
    const header = sortableHeader(event.target);
    if (!header) return;
    event.preventDefault();
    sortBy(header);
  });
}
