#!/usr/bin/env bash
# The workers bench's SMTP sink (bench/smtpsink, Go), built through the Go module proxy and cached by the
# hash of its source, so an edit rebuilds it and an unchanged tree never does. Prints the binary's path.
. "$(dirname "$0")/lib.sh"
SRC="$(cd "$(dirname "$0")/../../bench/smtpsink" && pwd)"
HASH=$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC"/*.go | sha256sum | cut -c1-12)
W="$CACHE_ROOT/smtpsink-$HASH"
if stamp_ok "$W"; then echo "$W/bin/smtpsink"; exit 0; fi
mkdir -p "$W/bin"
log "building the bench's SMTP sink (a few seconds; first time: one module download)"
(cd "$SRC" && go build -trimpath -ldflags "-s -w" -o "$W/bin/smtpsink" .)
stamp_write "$W"
echo "$W/bin/smtpsink"
