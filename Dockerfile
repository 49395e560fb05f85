# The release image (goreleaser dockers_v2 builds it for linux/amd64 and linux/arm64
# from the release binaries): one static binary, no shell, no package manager, a
# non-root user. TLS roots are embedded in the binary (x509roots/fallback).
# CI builds this same file offline into an OCI layout and runs the binary inside it
# (go run ./tools/ociimage); that builder understands only the instructions below.
FROM scratch
ARG TARGETPLATFORM
COPY ${TARGETPLATFORM}/cbk-sync /usr/local/bin/cbk-sync
COPY LICENSE /usr/share/doc/cbk-sync/LICENSE
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/cbk-sync"]
