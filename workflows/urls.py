from django.urls import path

from workflows import api, gallery_views

urlpatterns = [
    path("blocks/", api.blocks, name="api-blocks"),
    path("workflows/", api.workflow_list, name="api-workflows"),
    path("workflows/validate/", api.validate_graph, name="api-workflow-validate"),
    path("workflows/<int:pk>/", api.workflow_detail, name="api-workflow"),
    path("workflows/<int:pk>/versions/", api.workflow_versions, name="api-workflow-versions"),
    path(
        "workflows/<int:pk>/versions/<int:number>/",
        api.workflow_version,
        name="api-workflow-version",
    ),
    path(
        "workflows/<int:pk>/versions/<int:number>/diff/",
        api.workflow_diff,
        name="api-workflow-diff",
    ),
    path("workflows/<int:pk>/runs/", api.workflow_runs, name="api-workflow-runs"),
    path("runs/<int:pk>/", api.run_detail, name="api-run"),
    path("runs/<int:pk>/approve/", api.run_approve, name="api-run-approve"),
    path("runs/<int:pk>/reject/", api.run_reject, name="api-run-reject"),
    path("runs/<int:pk>/cancel/", api.run_cancel, name="api-run-cancel"),
    path("templates/", gallery_views.api_templates, name="api-templates"),
    path("templates/<slug:key>/use/", gallery_views.api_use_template, name="api-template-use"),
    path("notifications/", api.notifications, name="api-notifications"),
    path("notifications/<int:pk>/read/", api.notification_read, name="api-notification-read"),
]
