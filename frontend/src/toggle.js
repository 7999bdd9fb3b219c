// [data-toggle-target="#id"] shows or hides the element with that id.
// Triggers that share a data-toggle-group act as tabs (raw / decoded / hex): one
// panel shows at a time. The server renders every panel visible, so a page
// without script shows them all; here they fold to the pressed (or first) one.

function targetOf(trigger) {
  try {
    return document.querySelector(trigger.dataset.toggleTarget);
  } catch {
    return null; // not a valid selector
  }
}

function groupMembers(name) {
  return [...document.querySelectorAll("[data-toggle-group]")].filter((el) => el.dataset.toggleGroup === name);
}

function selectInGroup(chosen) {
  for (const trigger of groupMembers(chosen.dataset.toggleGroup)) {
    const active = trigger === chosen;
    const panel = targetOf(trigger);
    if (panel) panel.hidden = !active;
    trigger.setAttribute("aria-pressed", String(active));
  }
}

export function initToggles(root) {
  const groups = new Set();
  for (const trigger of root.querySelectorAll("[data-toggle-target]")) {
    const panel = targetOf(trigger);
    if (panel && panel.id) trigger.setAttribute("aria-controls", panel.id);
    if (trigger.dataset.toggleGroup) groups.add(trigger.dataset.toggleGroup);
    else if (panel) trigger.setAttribute("aria-expanded", String(!panel.hidden));
  }
  for (const name of groups) {
    const members = groupMembers(name);
    selectInGroup(members.find((el) => el.getAttribute("aria-pressed") === "true") || members[0]);
  }

  root.addEventListener("click", (event) => {
    const trigger = event.target.closest("[data-toggle-target]");
    if (!trigger) return;
    const panel = targetOf(trigger);
    if (!panel) return;
    event.preventDefault();
    if (trigger.dataset.toggleGroup) {
      selectInGroup(trigger);
    } else {
      panel.hidden = !panel.hidden;
      trigger.setAttribute("aria-expanded", String(!panel.hidden));
    }
  });
}
