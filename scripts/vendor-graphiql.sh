#!/usr/bin/env bash
# Refresh the GraphiQL page's vendored builds in server/static/graphiql/vendor/ from the npm registry.
#
#   make vendor-graphiql        (needs npm; never run by the tests or CI, which use the committed files)
#
# To move to other versions, change the pins below, run this, then `make test` (the browser test in
# tests/e2e/test_graphiql.py loads the page with every request off this machine blocked). The files are
# copied from each package as published, unmodified, with the package's license; VERSIONS.md records
# what was copied and each file's sha256.
set -euo pipefail
cd "$(dirname "$0")/.."

# GraphiQL 4.1 is the last line with a UMD build (5.x is ES modules around Monaco); its UMD bundle includes
# graphql-js and graphql-ws. React 18 is the last with UMD builds.
REACT=18.3.1
GRAPHIQL=4.1.2
EXPLORER=4.0.6
# Bundled into the explorer plugin's UMD build; only its license is copied.
GRAPHIQL_EXPLORER=0.9.0

VENDOR=server/static/graphiql/vendor
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# unpack NAME@VERSION: the package's files under $work/NAME@VERSION/package/
unpack() {
  local spec="$1" tarball
  tarball="$(cd "$work" && npm pack --silent "$spec")"
  mkdir -p "$work/$spec"
  tar -xzf "$work/$tarball" -C "$work/$spec"
}

# copy NAME@VERSION DESTINATION FILE...: files from the package into $VENDOR/DESTINATION/
copy() {
  local spec="$1" destination="$VENDOR/$2"
  shift 2
  mkdir -p "$destination"
  for file in "$@"; do
    cp "$work/$spec/package/$file" "$destination/$(basename "$file")"
  done
}

unpack "react@$REACT"
unpack "react-dom@$REACT"
unpack "graphiql@$GRAPHIQL"
unpack "@graphiql/plugin-explorer@$EXPLORER"
unpack "graphiql-explorer@$GRAPHIQL_EXPLORER"

rm -rf "$VENDOR"
copy "react@$REACT" react umd/react.production.min.js LICENSE
copy "react-dom@$REACT" react-dom umd/react-dom.production.min.js LICENSE
copy "graphiql@$GRAPHIQL" graphiql graphiql.min.js graphiql.min.css LICENSE
copy "@graphiql/plugin-explorer@$EXPLORER" plugin-explorer dist/index.umd.js dist/style.css
# The plugin's package carries no license file: it is MIT (its package.json) and lives in GraphiQL's
# repository, under GraphiQL's license; it bundles graphiql-explorer, under its own.
cp "$work/graphiql@$GRAPHIQL/package/LICENSE" "$VENDOR/plugin-explorer/LICENSE"
cp "$work/graphiql-explorer@$GRAPHIQL_EXPLORER/package/LICENSE" "$VENDOR/plugin-explorer/LICENSE.graphiql-explorer"

{
  echo "# Vendored GraphiQL builds"
  echo
  echo "Written by \`scripts/vendor-graphiql.sh\` (\`make vendor-graphiql\`); do not edit by hand. Each file is"
  echo "copied unmodified from the npm package named, with that package's license."
  echo
  echo "| Package | Version | Files |"
  echo "|---|---|---|"
  echo "| react | $REACT | \`react/react.production.min.js\` |"
  echo "| react-dom | $REACT | \`react-dom/react-dom.production.min.js\` |"
  echo "| graphiql | $GRAPHIQL | \`graphiql/graphiql.min.js\`, \`graphiql/graphiql.min.css\` |"
  echo "| @graphiql/plugin-explorer | $EXPLORER | \`plugin-explorer/index.umd.js\`, \`plugin-explorer/style.css\` (bundles graphiql-explorer $GRAPHIQL_EXPLORER) |"
  echo
  echo "sha256:"
  echo
  echo '```'
  (cd "$VENDOR" && find . -type f ! -name VERSIONS.md | sort | sed 's|^\./||' | xargs sha256sum)
  echo '```'
} > "$VENDOR/VERSIONS.md"

echo "vendored into $VENDOR:"
(cd "$VENDOR" && find . -type f | sort)
