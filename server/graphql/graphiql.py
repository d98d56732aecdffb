"""GraphiQL at /graphql for browsers: Darkroom's own page, every asset served from /graphiql/.

Strawberry's page loads React and GraphiQL from a CDN; this one loads the vendored builds in
server/static/graphiql/vendor/, so it works offline and under the policy below.
"""

from __future__ import annotations

from pathlib import Path

from litestar import MediaType, Response

# Darkroom's own GraphiQL page: every script and stylesheet it loads is served from /graphiql/ (the vendored
# builds in server/static/graphiql/vendor/), so it works offline and under this policy.
GRAPHIQL_PAGE = (Path(__file__).parent / "graphiql.html").read_text(encoding="utf-8")
GRAPHIQL_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # React and CodeMirror set style attributes
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",  # queries by POST, subscriptions over ws(s):// to this same host
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


def graphiql_page() -> Response[str]:
    return Response(GRAPHIQL_PAGE, media_type=MediaType.HTML, headers={"Content-Security-Policy": GRAPHIQL_POLICY})
