// data-confirm="Are you sure…" on a button, link or form asks before it acts.

export function initConfirm(root) {
  // Capturing, so a refusal stops the click before any other handler sees it.
  root.addEventListener(
    "click",
    (event) => {
      const trigger = event.target.closest("[data-confirm]");
      if (!trigger || trigger instanceof HTMLFormElement) return;
      if (!window.confirm(trigger.dataset.confirm)) {
        event.preventDefault();
        event.stopImmediatePropagation();
      }
    },
    true,
  );
  root.addEventListener(
    "submit",
    (event) => {
      const form = event.target;
      if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-confirm")) return;
      // The button that submitted has asked already.
      if (event.submitter && event.submitter.hasAttribute("data-confirm")) return;
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        event.stopImmediatePropagation();
      }
    },
    true,
  );
}
