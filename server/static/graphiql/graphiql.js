// Darkroom's GraphiQL page, served at /graphql to browsers. React, GraphiQL and its explorer plugin are
// the vendored UMD builds this page loads before it (globals React, ReactDOM, GraphiQL and
// GraphiQLPluginExplorer); nothing is fetched from anywhere but this server.
"use strict";

const EXAMPLE = `# Ctrl-Enter runs an operation. When the server needs an API key, put it in the
# Headers tab below: {"Authorization": "Bearer drk_..."}. It goes with every
# request, and in connection_init for subscriptions.

mutation Start {
  startGeneration(input: {
    model: "darkroom-sim/pixel-forge"
    input: {prompt: "a lighthouse at dusk"}
  }) {
    generation { id status }
    userErrors { field message code }
  }
}

# Paste the id startGeneration returned, then run Follow.
subscription Follow {
  generation(id: "…") {
    status progress error
    media { kind status url }
  }
}
`;

function endpoints() {
  // The page is served by the GraphQL endpoint itself: queries go back to where it came from.
  const http = new URL(window.location.href);
  http.search = "";
  http.hash = "";
  const ws = new URL(http);
  ws.protocol = http.protocol === "https:" ? "wss:" : "ws:";
  return { http: http.href, ws: ws.href };
}

function main() {
  const { http, ws } = endpoints();
  // GraphiQL's own fetcher: queries and mutations by POST, subscriptions over graphql-transport-ws (its
  // bundled graphql-ws client). The Headers tab's headers go with each POST and, for a subscription, in
  // the connection_init payload, where Darkroom looks for the Authorization key.
  const fetcher = GraphiQL.createFetcher({ url: http, subscriptionUrl: ws });
  const explorer = GraphiQLPluginExplorer.explorerPlugin();
  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher,
      plugins: [explorer],
      defaultQuery: EXAMPLE,
      defaultEditorToolsVisibility: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
      inputValueDeprecation: true,
    }),
  );
}

main();
