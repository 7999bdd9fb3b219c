// <form class="timewindow"> with <select name="last">: picking a window loads it.
// The server renders the page's other query parameters as hidden inputs, so the
// form alone reproduces the page in the new window.

/** The query string for a relative window chosen in `form`. */
export function windowQuery(formData) {
  const params = new URLSearchParams(formData);
  // The server lets an absolute range win over `last`, so a relative choice drops it.
  params.delete("from");
  params.delete("to");
  return params.toString();
}

export function initTimeWindow(root) {
  root.addEventListener("change", (event) => {
    const select = event.target;
    if (!(select instanceof HTMLSelectElement) || select.name !== "last") return;
    const form = select.closest("form.timewindow");
    // The empty option stands for the current absolute range: nothing to load.
    if (!form || select.value === "") return;
    const url = new URL(form.action || window.location.href);
    url.search = windowQuery(new FormData(form));
    window.location.assign(url.href);
  });
}
