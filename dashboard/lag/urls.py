from django.urls import path

from dashboard.lag import api, views

urlpatterns = [
    path("consumers/", views.consumer_list, name="consumers"),
    path("consumers/<str:stream>/<str:name>/", views.consumer_detail, name="consumer"),
    path("api/consumers", api.consumers, name="api_consumers"),
    path("api/consumers/<str:stream>/<str:name>", api.consumer, name="api_consumer"),
]
