"""The live socket, `/ws/events/`: one per page, carrying the event tail (`/live/`) and
the cheap live summaries other pages show. Protocol (JSON text frames):

browser -> server
  {"type": "subscribe", "filters": {...}, "credit": 500, "since": {"rx": .., "id": ..}, "have": [ids]}
      tail the events matching `filters`; `since` (a cursor this server sent before) resumes
      after a reconnect: the gap is backfilled from the store, minus the ids the page `have`s
  {"type": "credit", "n": 120}            the page has drawn 120 more events
  {"type": "summaries", "kinds": {"overview": {"seconds": 900}, "deadletters": {}}}
server -> browser
  {"type": "events", "events": [...], "backfill": false, "cursor": {...}, "sent": <forwarded at>}
  {"type": "events", "events": [...], "backfill": true, "missed": 0, "more": false, "cursor": {...}}
  {"type": "stats", "matching": .., "shown": .., "skipped": .., "seconds": .., "cursor": .., "interrupted": ..}
  {"type": "summary", "kind": "overview", "data": {...}}
  {"type": "error", "reason": "..."}
"""
import asyncio
import logging

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from redis.exceptions import RedisError

from collector.live import readers
from collector.live.filters import BadFilter, Filters
from collector.live.protocol import BATCH_TYPE, LIVE_GROUP, OVERLAP, for_browser
from collector.live.summaries import BadParams
from collector.roles import ROLES, has_role
from dashboard.live.summaries import hub
from dashboard.live.tail import Tail

log = logging.getLogger("eventscope.live")

STATS_SECONDS = 1.0
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NO_ROLE = 4403
CLOSE_LAYER_DOWN = 4503
MAX_HAVE = 5_000  # ids a resuming page may list


def may_watch(user):
    """Who may open the live socket: the same people who may see the pages (logged in and
    in a role group). The one place to change when access rules change. Returns the close
    code for a refusal, or None."""
    if user is None or not user.is_authenticated or not user.is_active:
        return CLOSE_UNAUTHENTICATED
    if not has_role(user, *ROLES):
        return CLOSE_NO_ROLE
    return None


class EventStreamConsumer(AsyncJsonWebsocketConsumer):
    """Anonymous sockets are closed with 4401, a user in no role group with 4403, before any
    data is sent."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tail = None  # the event tail, once the page subscribes
        self.joined = False  # in the LIVE_GROUP
        self.ticker = None  # the task sending stats every second
        self.sent_summaries = {}  # kind -> the data this socket was last sent

    async def connect(self):
        refusal = await database_sync_to_async(may_watch)(self.scope.get("user"))
        if refusal is not None:
            await self.close(code=refusal)
            return
        await self.accept()

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        except (ConnectionError, OSError, RedisError) as error:
            # The channel layer (Redis) went away: close with a reason the page can show,
            # rather than a traceback; the page reconnects and resumes from its cursor.
            log.warning("live socket closed: the channel layer is unreachable (%s)", error)
            await self._cleanup()
            try:
                # 4503: an application code (autobahn takes 1000 or 3000-4999 from a server).
                await send({"type": "websocket.close", "code": CLOSE_LAYER_DOWN})
            except Exception:  # the client is gone too
                pass

    async def dispatch(self, message):
        if message["type"] == BATCH_TYPE:
            # Batches arrive several times a second: skip the per-message closing of old
            # database connections (the backfill's own thread does it when it runs).
            await self.events_batch(message)
        else:
            await super().dispatch(message)

    async def disconnect(self, code):
        await self._cleanup()

    async def _cleanup(self):
        hub.unsubscribe(self)
        if self.ticker is not None:
            self.ticker.cancel()
            self.ticker = None
        if self.joined:
            self.joined = False
            try:
                await self.channel_layer.group_discard(LIVE_GROUP, self.channel_name)
            except Exception:  # Redis is gone: the membership expires on its own
                pass

    @classmethod
    async def encode_json(cls, content):
        return orjson.dumps(content).decode()

    async def receive_json(self, content, **kwargs):
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "subscribe":
            await self.subscribe(content)
        elif kind == "credit":
            if self.tail is not None:
                self.tail.grant(content.get("n"))
        elif kind == "summaries":
            await self.summaries(content.get("kinds"))
        else:
            await self.send_json({"type": "error", "reason": f"unknown message type {kind!r}"})

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = orjson.loads(text_data or b"")
        except orjson.JSONDecodeError:
            await self.send_json({"type": "error", "reason": "messages must be JSON text"})
            return
        await self.receive_json(content)

    # --- the event tail ---------------------------------------------------------------

    async def subscribe(self, content):
        try:
            filters = Filters.parse(content.get("filters"))
            since = _cursor(content.get("since"))
            have = _ids(content.get("have"))
        except BadFilter as error:
            await self.send_json({"type": "error", "reason": str(error)})
            return
        rate_cap = await database_sync_to_async(readers.rate_cap)()
        # A fresh page starts from the collectors' last reported cursor, so a connection
        # lost before its first batch still resumes without a hole.
        start = since if since is not None else await database_sync_to_async(readers.start_cursor)()
        tail = Tail(filters, rate_cap, content.get("credit", 0), since=start)
        if not self.joined:
            # Join before reading the store: whatever commits from now on comes in a batch,
            # whatever committed before is in the backfill (both: dropped by id).
            await self.channel_layer.group_add(LIVE_GROUP, self.channel_name)
            self.joined = True
        self.tail = tail
        await self.send_json({"type": "subscribed", "filters": filters.as_dict(), "rate_cap": tail.rate_cap,
                              "cursor": tail.cursor()})
        if since is not None:
            await self.backfill(tail, {"lo": since["rx"] - OVERLAP, "hi": None, "floor": since["id"],
                                       "exclude": have})
        if self.ticker is None:
            self.ticker = asyncio.ensure_future(self._tick())

    async def events_batch(self, message):
        tail = self.tail
        if tail is None:
            return
        window = tail.gap(message)
        if window is not None:
            await self.backfill(tail, window)
        shown = tail.take(message)
        if shown and tail is self.tail:
            await self.send_json({"type": "events", "events": [for_browser(e) for e in shown], "backfill": False,
                                  "cursor": tail.cursor(), "sent": message.get("sent")})

    async def backfill(self, tail, window):
        limit = tail.backfill_limit(readers.BACKFILL_LIMIT)
        try:
            events, missed, more = await database_sync_to_async(readers.backfill)(
                tail.filters, window["lo"], window["floor"], window["hi"], window["exclude"], limit=limit)
        except Exception as error:  # the store is unreachable: say so, the tail goes on
            log.warning("live backfill failed: %s", error)
            await self.send_json({"type": "error", "reason": f"could not backfill missed events: {error}"})
            return
        if tail is not self.tail:
            return  # re-subscribed meanwhile
        events = tail.take_backfill(events, missed)
        if events or missed:
            await self.send_json({"type": "events", "events": [for_browser(e) for e in events], "backfill": True,
                                  "missed": missed, "more": more, "cursor": tail.cursor()})

    async def _tick(self):
        while True:
            await asyncio.sleep(STATS_SECONDS)
            if self.tail is not None:
                await self.send_json(self.tail.stats())

    # --- summaries ----------------------------------------------------------------------

    async def summaries(self, kinds):
        if not isinstance(kinds, dict):
            await self.send_json({"type": "error", "reason": "summaries: kinds must be an object"})
            return
        hub.unsubscribe(self)
        for kind, params in kinds.items():
            try:
                hub.subscribe(self, kind, params)
            except BadParams as error:
                await self.send_json({"type": "error", "reason": f"summary {kind}: {error}"})

    async def send_summary(self, kind, data):
        if self.sent_summaries.get(kind) == data:
            return
        self.sent_summaries[kind] = data
        try:
            await self.send_json({"type": "summary", "kind": kind, "data": data})
        except Exception:  # the socket closed meanwhile
            hub.unsubscribe(self)


def _cursor(value):
    if value is None:
        return None
    try:
        cursor = {"rx": int(value["rx"]), "id": int(value["id"])}
    except (KeyError, TypeError, ValueError):
        raise BadFilter("since must be a cursor this server sent: {\"rx\": .., \"id\": ..}") from None
    if cursor["rx"] < 0 or cursor["id"] < 0:
        raise BadFilter("since must be a cursor this server sent")
    return cursor


def _ids(value):
    if value is None:
        return set()
    if not isinstance(value, list):
        raise BadFilter("have must be a list of event ids")
    try:
        return {int(v) for v in value[:MAX_HAVE]}
    except (TypeError, ValueError):
        raise BadFilter("have must be a list of event ids") from None
