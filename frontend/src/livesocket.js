// The page's one live socket (/ws/events/): the live tail and the live summaries share
// it. It reconnects with growing waits; whoever uses it re-sends its subscription on
// every (re)connection through whenOpen(), so a restarted server picks up where the
// page was (the tail sends its cursor).
import { nextWait, socketUrl } from "./livecore.js";

class LiveSocket {
  constructor(url) {
    this.url = url;
    this.handlers = new Map();
    this.openers = [];
    this.closers = [];
    this.wait = 500;
    this.socket = null;
  }

  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(handler);
  }

  whenOpen(handler) {
    this.openers.push(handler);
    if (this.socket && this.socket.readyState === WebSocket.OPEN) handler();
  }

  whenClosed(handler) {
    this.closers.push(handler);
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  connect() {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.wait = 500;
      for (const handler of this.openers) handler();
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      for (const handler of this.handlers.get(message.type) || []) handler(message);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      for (const handler of this.closers) handler(event, this.wait);
      setTimeout(() => this.connect(), this.wait);
      this.wait = nextWait(this.wait);
    });
  }
}

let shared = null;

/** The page's live socket, connected on first use. */
export function liveSocket() {
  if (!shared) {
    shared = new LiveSocket(socketUrl(window.location));
    shared.connect();
  }
  return shared;
}
