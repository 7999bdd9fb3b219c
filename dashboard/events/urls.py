from django.urls import path

from dashboard.events import api, topics, views

urlpatterns = [
    path("topics/", topics.topic_list, name="topics"),
    path("topics/<path:name>/publish/", topics.publish, name="topic_publish"),
    path("topics/<path:name>/", topics.topic_detail, name="topic"),
    path("events/", views.event_list, name="events"),
    path("events/<int:ident>/", views.event_detail, name="event"),
    path("events/<int:ident>/raw/", views.event_raw, name="event_raw"),
    path("api/topics", api.topics, name="api_topics"),
    path("api/topics/<path:name>/events", api.topic_events, name="api_topic_events"),
    path("api/events", api.events, name="api_events"),
    path("api/events/<int:ident>", api.event, name="api_event"),
]
