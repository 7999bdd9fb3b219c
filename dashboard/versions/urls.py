from django.urls import path

from dashboard.versions import api, views

# Type names may hold slashes (CloudEvents types are free text): the schema download comes
# first so that its suffix is not read as part of a type.
urlpatterns = [
    path("versions/", views.version_list, name="versions"),
    path("versions/<path:type_name>/", views.version_detail, name="version_type"),
    path("api/versions", api.versions, name="api_versions"),
    path("api/versions/<path:type_name>/schema", api.version_schema, name="api_version_schema"),
    path("api/versions/<path:type_name>", api.version_type, name="api_version"),
]
