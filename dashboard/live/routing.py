from django.urls import path

from dashboard.live import consumers

websocket_urlpatterns = [
    path("ws/events/", consumers.EventStreamConsumer.as_asgi()),
]
