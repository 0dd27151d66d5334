// Starts Swagger UI on the API docs page (templates/drf_spectacular/swagger_ui.html): the same
// behaviour as drf-spectacular's inline script, read from data- attributes so that the page needs
// no inline script under the Content-Security-Policy.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  var data = root.dataset;
  var swaggerSettings = JSON.parse(data.settings || "{}");
  var oauth2Config = JSON.parse(data.oauth2Config || "{}");
  var schemaAuthNames = JSON.parse(data.schemaAuthNames || "[]");
  var schemaAuthFailed = false;
  var ui = null;
  var plugins = [];

  function reload(ori) {
    return function () {
      schemaAuthFailed = false;
      setTimeout(function () { ui.specActions.download(); });
      return ori.apply(null, arguments);
    };
  }
  if (schemaAuthNames.length > 0) {
    plugins.push(function () {
      return {
        statePlugins: {
          auth: { wrapActions: { authorizeOauth2: reload, authorize: reload, logout: reload } },
        },
      };
    });
  }

  function isSchemaUrl(url) {
    return ui !== null && url === new URL(ui.getConfigs().url, document.baseURI).href;
  }

  function responseInterceptor(response) {
    if (!response.ok && isSchemaUrl(response.url) && !schemaAuthFailed) {
      schemaAuthFailed = true; // retry once without credentials
      setTimeout(function () { ui.specActions.download(); });
    }
    return response;
  }

  function injectAuthCredentials(request) {
    var authorized;
    if (ui !== null) {
      var state = ui.getState().get("auth").get("authorized");
      if (state !== undefined && Object.keys(state.toJS()).length !== 0) authorized = state.toJS();
    } else if ([undefined, "{}"].indexOf(localStorage.authorized) === -1) {
      authorized = JSON.parse(localStorage.authorized);
    }
    if (authorized === undefined) return;
    for (var i = 0; i < schemaAuthNames.length; i++) {
      var auth = authorized[schemaAuthNames[i]];
      if (auth === undefined || auth.schema === undefined) continue;
      var schema = auth.schema;
      if (schema.type === "http" && schema.scheme === "bearer") {
        request.headers["Authorization"] = "Bearer " + auth.value;
        return;
      } else if (schema.type === "http" && schema.scheme === "basic") {
        request.headers["Authorization"] =
          "Basic " + btoa(auth.value.username + ":" + auth.value.password);
        return;
      } else if (schema.type === "apiKey" && schema.in === "header") {
        request.headers[schema.name] = auth.value;
        return;
      } else if (schema.type === "oauth2" && auth.token.token_type === "Bearer") {
        request.headers["Authorization"] = "Bearer " + auth.token.access_token;
        return;
      }
    }
  }

  function requestInterceptor(request) {
    if (request.loadSpec && schemaAuthNames.length > 0 && !schemaAuthFailed) {
      try {
        injectAuthCredentials(request);
      } catch (e) {
        console.error("schema auth injection failed with error: ", e);
      }
    }
    if (["GET", undefined].indexOf(request.method) === -1 && request.credentials === "same-origin") {
      request.headers[data.csrfHeaderName] = data.csrfToken;
    }
    return request;
  }

  ui = SwaggerUIBundle(Object.assign({
    url: data.schemaUrl,
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    plugins: plugins,
    layout: "BaseLayout",
    requestInterceptor: requestInterceptor,
    responseInterceptor: responseInterceptor,
  }, swaggerSettings));
  if (Object.keys(oauth2Config).length > 0) ui.initOAuth(oauth2Config);
})();
