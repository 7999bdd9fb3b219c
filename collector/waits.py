"""Waiting that a stop cuts short, for the collector's loops."""
import asyncio


async def pause(stop, seconds):
    """Sleep `seconds`, or less when the `stop` event is set meanwhile; True if stopped."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True
