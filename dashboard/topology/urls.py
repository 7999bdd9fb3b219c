from django.urls import path

from dashboard.topology import views

urlpatterns = [
    path("topology/", views.topology, name="topology"),
    path("services/<str:name>/", views.service, name="service"),
    path("api/topology", views.api_topology, name="api_topology"),
]
