from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard import api
from dashboard.views import events, health, overview, topics

urlpatterns = [
    path("", overview.overview, name="overview"),
    path("search/", overview.search, name="search"),
    path("topics/", topics.topic_list, name="topics"),
    path("topics/<path:name>/publish/", topics.publish, name="topic_publish"),
    path("topics/<path:name>/", topics.topic_detail, name="topic"),
    path("events/", events.event_list, name="events"),
    path("events/<int:ident>/", events.event_detail, name="event"),
    path("events/<int:ident>/raw/", events.event_raw, name="event_raw"),
    path("api/overview", api.overview, name="api_overview"),
    path("api/topics", api.topics, name="api_topics"),
    path("api/topics/<path:name>/events", api.topic_events, name="api_topic_events"),
    path("api/events", api.events, name="api_events"),
    path("api/events/<int:ident>", api.event, name="api_event"),
    path("healthz", health.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls_traces")),
    path("", include("dashboard.urls_dlq")),
]
