from django.urls import path

from dashboard.traces import jaeger_api
from dashboard.traces import views as traces

urlpatterns = [
    path("traces/", traces.trace_list, name="traces"),
    path("traces/red/", traces.red, name="traces_red"),
    path("traces/compare/", traces.compare, name="traces_compare"),
    path("traces/<str:trace_id>/", traces.trace_detail, name="trace"),
    path("traces/<str:trace_id>/json/", traces.trace_json, name="trace_json"),
    path("traces/<str:trace_id>/share/", traces.share_create, name="trace_share_create"),
    path("share/traces/<str:token>/", traces.shared_trace, name="trace_share"),
    path("share/traces/<str:token>/json/", traces.shared_trace_json, name="trace_share_json"),
    path("jaeger/api/services", jaeger_api.services, name="jaeger_services"),
    path("jaeger/api/services/<path:service>/operations", jaeger_api.service_operations,
         name="jaeger_service_operations"),
    path("jaeger/api/operations", jaeger_api.operations, name="jaeger_operations"),
    path("jaeger/api/traces", jaeger_api.traces, name="jaeger_traces"),
    path("jaeger/api/traces/<str:trace_id>", jaeger_api.trace, name="jaeger_trace"),
    path("jaeger/api/dependencies", jaeger_api.dependencies, name="jaeger_dependencies"),
]
