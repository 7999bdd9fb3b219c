// <div data-refresh="10">: reload the page every 10 s, but never under a reader
// who has scrolled down or is typing. [data-refresh-toggle] pauses it; the
// button is added to the data-refresh element when the page has none.

const BUSY_FIELDS =
  "input:not([type=button]):not([type=submit]):not([type=checkbox]):not([type=radio]), textarea, select, [contenteditable]";

function readerIsBusy() {
  // A reload would lose the reader's place or what they are typing.
  if (window.scrollY > 0) return true;
  const focused = document.activeElement;
  return Boolean(focused && focused.matches(BUSY_FIELDS));
}

function toggleButton(root, holder) {
  const existing = root.querySelector("[data-refresh-toggle]");
  if (existing) return existing;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link refresh-toggle";
  button.setAttribute("data-refresh-toggle", "");
  holder.append(button);
  return button;
}

export function initAutoRefresh(root) {
  const holder = root.querySelector("[data-refresh]");
  if (!holder) return;
  const seconds = Number(holder.dataset.refresh);
  if (!Number.isFinite(seconds) || seconds < 1) return;

  let paused = false;
  let remaining = seconds;
  const toggle = toggleButton(root, holder);
  const render = () => {
    toggle.textContent = paused ? "Resume auto-refresh" : `Pause auto-refresh (${seconds} s)`;
    toggle.setAttribute("aria-pressed", String(paused));
    toggle.title = paused
      ? "The page stays as it is until you resume"
      : `Reloads every ${seconds} s while the page is scrolled to the top and nothing is being typed`;
  };
  toggle.addEventListener("click", (event) => {
    event.preventDefault();
    paused = !paused;
    remaining = seconds;
    render();
  });
  render();

  setInterval(() => {
    // A hidden tab does not count down: no load on the server for nobody.
    if (paused || document.hidden) return;
    remaining = Math.max(0, remaining - 1);
    // When the reader is busy the countdown waits at zero and reloads once they are done.
    if (remaining === 0 && !readerIsBusy()) window.location.reload();
  }, 1000);
}
