from django.urls import path

from dashboard.lag import api, views

urlpatterns = [
    path("consumers/", views.consumer_list, name="consumers"),
    # `path`: a RabbitMQ vhost may be `/` (written %2F, which arrives decoded).
    path("consumers/<path:stream>/<str:name>/", views.consumer_detail, name="consumer"),
    path("api/consumers", api.consumers, name="api_consumers"),
    path("api/consumers/<path:stream>/<str:name>", api.consumer, name="api_consumer"),
]
