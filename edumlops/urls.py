from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from edumlops.audit import views as audit_views
from edumlops.datasets import api as datasets_api
from edumlops.datasets import views as datasets_views
from edumlops.deployments import api as deployments_api
from edumlops.deployments import hotpath as deployments_hotpath
from edumlops.deployments import views as deployments_views
from edumlops.fleet import api as fleet_api
from edumlops.fleet import views as fleet_views
from edumlops.monitoring import api as monitoring_api
from edumlops.monitoring import views as monitoring_views
from edumlops.privacy import api as privacy_api
from edumlops.registry import api as registry_api
from edumlops.registry import review_api, review_views
from edumlops.registry import views as registry_views
from edumlops.schools import api as schools_api
from edumlops.site import keys as site_keys
from edumlops.site import notifications
from edumlops.site import privacy as privacy_views
from edumlops.site import views as core_views
from workflows import gallery_views, threshold_views, training_views
from workflows import views as workflow_views

urlpatterns = [
    path("", core_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("districts/<int:pk>/", core_views.district_dashboard, name="district"),
    path("schools/<int:pk>/", core_views.school_dashboard, name="school"),
    path("schools/<int:pk>/model/", core_views.school_model_card, name="school-model"),
    path("notifications/", notifications.notification_list, name="notifications"),
    path("notifications/read/", notifications.notification_mark_read, name="notifications-read"),
    path("notifications/<int:pk>/open/", notifications.notification_open, name="notification-open"),
    path("favicon.ico", core_views.favicon, name="favicon"),
    path("datasets/", datasets_views.dataset_list, name="datasets"),
    path("datasets/versions/<int:pk>/", datasets_views.version_profile, name="dataset-version"),
    path("models/", core_views.models_page, name="models"),
    path("models/train/", training_views.train, name="model-train"),
    path("models/<int:pk>/", registry_views.model_card_page, name="model-card"),
    path(
        "models/<int:pk>/card.<str:fmt>",
        registry_views.model_card_download,
        name="model-card-download",
    ),
    path("ratings/", review_views.ratings, name="ratings"),
    path("ratings/<int:pk>/", review_views.rate, name="rating"),
    path("ratings/models/<int:pk>/add/", review_views.add_to_training, name="ratings-add"),
    path("runs/<int:pk>/", workflow_views.run_page, name="run"),
    path("workflows/", workflow_views.workflow_list_page, name="workflows"),
    path("workflows/new/", workflow_views.workflow_new, name="workflow-new"),
    path("workflows/templates/", gallery_views.gallery, name="workflow-templates"),
    path("workflows/<int:pk>/", workflow_views.workflow_edit, name="workflow-edit"),
    path(
        "workflows/<int:pk>/versions/",
        workflow_views.workflow_versions_partial,
        name="workflow-versions",
    ),
    path(
        "workflows/<int:pk>/versions/<int:number>/diff/",
        workflow_views.workflow_diff_partial,
        name="workflow-diff",
    ),
    path(
        "workflows/<int:pk>/versions/<int:number>/run/",
        workflow_views.workflow_run_version,
        name="workflow-run-version",
    ),
    path("runs/<int:pk>/steps/<str:node_id>/", workflow_views.run_step_partial, name="run-step"),
    path("thresholds/", threshold_views.thresholds_page, name="thresholds"),
    path("api/thresholds/", threshold_views.api_thresholds, name="api-thresholds"),
    path("thresholds/replay/", threshold_views.thresholds_replay, name="thresholds-replay"),
    path(
        "api/thresholds/replay/",
        threshold_views.api_thresholds_replay,
        name="api-thresholds-replay",
    ),
    path("audit/", audit_views.audit_page, name="audit"),
    path("privacy/", privacy_views.privacy_page, name="privacy"),
    path("api/privacy/budgets/", privacy_api.budget_list, name="api-privacy-budgets"),
    path(
        "api/privacy/budgets/<str:cohort>/",
        privacy_api.budget_detail,
        name="api-privacy-budget",
    ),
    path("api/privacy/releases/", privacy_api.release_list, name="api-privacy-releases"),
    path("approvals/", workflow_views.approvals_inbox, name="approvals"),
    path("alerts/", monitoring_views.alerts_page, name="alerts"),
    path("api/alerts/", monitoring_api.alert_list, name="api-alerts"),
    path("api/telemetry/", monitoring_api.telemetry, name="api-telemetry"),
    path(
        "api/alerts/<int:pk>/acknowledge/",
        monitoring_api.alert_acknowledge,
        name="api-alert-acknowledge",
    ),
    path("api/alerts/<int:pk>/resolve/", monitoring_api.alert_resolve, name="api-alert-resolve"),
    path("deployments/", deployments_views.deployments_page, name="deployments"),
    path("schools/<int:pk>/rollback/", deployments_views.school_rollback, name="school-rollback"),
    path("schools/<int:pk>/try/", deployments_views.try_student, name="school-try-student"),
    path("api/deployments/", deployments_api.deployment_list, name="api-deployments"),
    path("api/deployments/<int:pk>/", deployments_api.deployment_detail, name="api-deployment"),
    path(
        "api/deployments/<int:pk>/rollback/",
        deployments_api.deployment_rollback,
        name="api-deployment-rollback",
    ),
    path(
        "api/deployments/<int:pk>/promote/",
        deployments_api.deployment_promote,
        name="api-deployment-promote",
    ),
    path(
        "api/schools/<int:pk>/predict/",
        deployments_hotpath.view(deployments_api.school_predict),
        name="api-predict",
    ),
    path("api/tokens/", deployments_api.token_list, name="api-tokens"),
    path("api/tokens/<int:pk>/revoke/", deployments_api.token_revoke, name="api-token-revoke"),
    path(
        "api/schools/<int:pk>/predictions/",
        deployments_api.school_predictions,
        name="api-predictions",
    ),
    path(
        "api/schools/<int:pk>/rollback/",
        deployments_api.school_rollback,
        name="api-school-rollback",
    ),
    path("edge/", fleet_views.edge_page, name="edge"),
    path("api/edge/hello/", fleet_api.hello, name="api-edge-hello"),
    path("api/edge/manifest/", fleet_api.manifest, name="api-edge-manifest"),
    path(
        "api/edge/bundles/<int:model_version>/<str:file>",
        fleet_api.bundle_file,
        name="api-edge-bundle",
    ),
    path("api/edge/report/", fleet_api.report, name="api-edge-report"),
    path("api/edge/telemetry/", fleet_api.telemetry, name="api-edge-telemetry"),
    path("api/edge/nodes/", fleet_api.node_list, name="api-edge-nodes"),
    path("api/edge/nodes/<int:pk>/revoke/", fleet_api.node_revoke, name="api-edge-node-revoke"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/me/", schools_api.me, name="api-me"),
    path("api/districts/", schools_api.district_list, name="api-districts"),
    path("api/districts/<int:pk>/", schools_api.district_detail, name="api-district"),
    path("api/schools/", schools_api.school_list, name="api-schools"),
    path("api/schools/<int:pk>/", schools_api.school_detail, name="api-school"),
    path("api/datasets/", datasets_api.dataset_list, name="api-datasets"),
    path("api/datasets/<int:pk>/", datasets_api.dataset_detail, name="api-dataset"),
    path("api/dataset-versions/<int:pk>/", datasets_api.version_detail, name="api-dataset-version"),
    path("api/models/", registry_api.model_list, name="api-models"),
    path("api/models/train/", training_views.model_train, name="api-model-train"),
    path("api/models/<int:pk>/", registry_api.model_detail, name="api-model"),
    path("api/models/<int:pk>/card.json", registry_api.model_card_json, name="api-model-card"),
    path("api/models/<int:pk>/card.md", registry_api.model_card_markdown, name="api-model-card-md"),
    path("api/models/<int:pk>/alias/", registry_api.model_alias, name="api-model-alias"),
    path("api/models/<int:pk>/predict/", registry_api.model_predict, name="api-model-predict"),
    path(
        "api/models/<int:pk>/ratings/add/",
        review_api.model_add_ratings,
        name="api-model-add-ratings",
    ),
    path("api/answer-reviews/", review_api.review_list, name="api-answer-reviews"),
    path(
        "api/answer-reviews/<int:pk>/rate/", review_api.review_rate, name="api-answer-review-rate"
    ),
    path("api/", include("workflows.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("account/keys/", site_keys.keys_page, name="api-keys"),
    path("api/me/keys/", site_keys.key_list, name="api-me-keys"),
    path("api/me/keys/<int:pk>/revoke/", site_keys.key_revoke, name="api-me-key-revoke"),
]

# Error pages: friendly HTML, or the API's error shape for /api/ paths (edumlops/site/views.py).
handler400 = "edumlops.site.views.bad_request"
handler403 = "edumlops.site.views.forbidden"
handler404 = "edumlops.site.views.not_found"
handler500 = "edumlops.site.views.server_error"
