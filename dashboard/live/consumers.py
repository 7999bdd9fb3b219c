from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from collector.roles import ROLES, has_role

LIVE_GROUP = "events.live"


class EventStreamConsumer(AsyncJsonWebsocketConsumer):
    """Streams newly stored events to logged-in browsers whose user has a role. Anonymous
    sockets are closed with 4401, a user in no role group with 4403, before any data is sent."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await database_sync_to_async(has_role)(user, *ROLES):
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(LIVE_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(LIVE_GROUP, self.channel_name)

    async def events_batch(self, message):
        await self.send_json({"events": message["events"]})
