from django.urls import path

from dashboard.versions import api, views

urlpatterns = [
    path("versions/", views.version_list, name="versions"),
    path("versions/<str:type_name>/", views.version_detail, name="version_type"),
    path("api/versions", api.versions, name="api_versions"),
    path("api/versions/<str:type_name>", api.version_type, name="api_version"),
    path("api/versions/<str:type_name>/schema", api.version_schema, name="api_version_schema"),
]
