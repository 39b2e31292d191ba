# relayq's image: a build stage makes the one-file bundle; the runtime stage is
# distroless Node 20 holding that file and nothing else (no npm, no shell).
# Build: docker build -t relayq:local .   (see deploy/README.md)

# The bundle is plain JavaScript, so it is built once on the builder's own
# platform and copied into every target platform: a multi-arch build runs no
# emulated npm.
FROM --platform=$BUILDPLATFORM node:20.20.2-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/build.mjs scripts/
COPY src/ src/
RUN npm run build

# Distroless publishes no version tags for its Node images, so the digest is the
# pin (the multi-arch index digest). Refresh it with:
#   docker buildx imagetools inspect gcr.io/distroless/nodejs20-debian12:nonroot
FROM gcr.io/distroless/nodejs20-debian12:nonroot@sha256:2cd820156cf039c8b54ae2d2a97e424b6729070714de8707a6b79f20d56f6a9a
WORKDIR /app
# Owned by root and read-only to the process: nothing in the image is writable,
# so the container runs unchanged with a read-only root filesystem.
COPY --from=build /src/dist/relayq.js /app/relayq.js
# Numeric, so Kubernetes' runAsNonRoot can check it without a user database.
USER 65532:65532
EXPOSE 8000 8001
# The base image's entrypoint is node itself (exec form, no shell), so relayq is
# PID 1 and receives SIGTERM directly; it drains and exits 0 on its own.
# RELAYQ_MODE is deliberately unset: every container says which side it runs.
CMD ["/app/relayq.js"]
