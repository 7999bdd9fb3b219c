// <button data-copy="text or /path/">: copies to the clipboard and says "Copied".
// An empty value copies the page's own address.

const FEEDBACK_MS = 1500;
const restoreTimers = new WeakMap();

/** What to put on the clipboard: paths become full links, so they work when pasted in a chat. */
export function copyText(value, pageUrl) {
  if (!value) return pageUrl;
  if (/^[/?#]/.test(value)) return new URL(value, pageUrl).href;
  return value;
}

async function writeClipboard(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Permission refused or document not focused: the fallback may still work.
    }
  }
  // Plain http on a LAN host has no Clipboard API; a selected textarea still copies there.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.append(area);
  area.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch {
    copied = false;
  }
  area.remove();
  return copied;
}

function showFeedback(button, label) {
  // A second click while "Copied" shows only restarts the timer, so the original label survives.
  let state = restoreTimers.get(button);
  if (!state) {
    state = { original: [...button.childNodes], timer: 0 };
    restoreTimers.set(button, state);
  }
  clearTimeout(state.timer);
  button.textContent = label;
  button.classList.add("copied");
  state.timer = setTimeout(() => {
    button.replaceChildren(...state.original);
    button.classList.remove("copied");
    restoreTimers.delete(button);
  }, FEEDBACK_MS);
}

export function initCopyButtons(root) {
  root.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    // A copy button inside a form must not submit it.
    event.preventDefault();
    const text = copyText(button.dataset.copy, window.location.href);
    if (await writeClipboard(text)) {
      showFeedback(button, "Copied");
    } else {
      window.prompt("Copy this:", text);
    }
  });
}
