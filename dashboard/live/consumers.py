from channels.generic.websocket import AsyncJsonWebsocketConsumer

LIVE_GROUP = "events.live"


class EventStreamConsumer(AsyncJsonWebsocketConsumer):
    """Streams newly stored events to logged-in browsers. Anonymous sockets are
    closed with 4401 before any data is sent."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(LIVE_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(LIVE_GROUP, self.channel_name)

    async def events_batch(self, message):
        await self.send_json({"events": message["events"]})
