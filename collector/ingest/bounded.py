"""The collector's queue of raw messages, bounded by count and by payload bytes.

A message's bytes stay counted from `put` until its batch is finished (`release`):
after the ack, or when the batch is given up. So the bound covers everything the
collector holds, the queue and every batch being decoded or written, whatever the size
of the messages; a full queue holds the broker callbacks back, and the broker (flow
control, max_ack_pending) holds the rest.
"""
import asyncio
from collections import deque


class MessageQueue:
    def __init__(self, max_messages, max_bytes):
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.held = 0  # payload bytes queued or in batches not yet released
        self._items = deque()
        self._waiters = []  # futures of puts and gets waiting for the queue to change

    def _room_for(self, size):
        # One message larger than the whole budget still goes in, alone.
        return len(self._items) < self.max_messages and (self.held == 0 or self.held + size <= self.max_bytes)

    async def _changed(self):
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self):
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def put(self, message):
        size = len(message.data or b"")
        while not self._room_for(size):
            await self._changed()
        self._items.append(message)
        self.held += size
        self._wake()

    def qsize(self):
        return len(self._items)

    def empty(self):
        return not self._items

    def peek_size(self):
        """Payload bytes of the next message (the queue must not be empty)."""
        return len(self._items[0].data or b"")

    def get_nowait(self):
        if not self._items:
            raise asyncio.QueueEmpty
        message = self._items.popleft()
        self._wake()
        return message

    async def get(self):
        while not self._items:
            await self._changed()
        return self.get_nowait()

    def release(self, messages):
        """The batch holding `messages` is finished: their bytes no longer count."""
        self.held = max(0, self.held - sum(len(m.data or b"") for m in messages))
        self._wake()

    async def wait_not_empty(self):
        """Return once a message is queued, without taking it."""
        while not self._items:
            await self._changed()
