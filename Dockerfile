# TabAgent Server in a container: build with the dev tools, run on a slim Node 20 image as a non-root user.
# GPU variant (NVIDIA): docker build --build-arg RUNTIME_BASE=nvidia/cuda:12.6.3-runtime-ubuntu24.04 -t tabagent:cuda .
# and run with --gpus all -e TABAGENT_INFERENCE__GPU=cuda (docs/deploy.md).
ARG NODE_IMAGE=node:20.20-bookworm-slim
ARG RUNTIME_BASE=node:20.20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Dependencies first, so a source change does not reinstall them. node-llama-cpp brings prebuilt llama.cpp
# binaries for CPU, CUDA and Vulkan; nothing is compiled here.
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY bench ./bench
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --no-audit --no-fund

FROM ${RUNTIME_BASE} AS runtime
# The CUDA base has no Node; the slim base already has this same binary.
COPY --from=build /usr/local/bin/node /usr/local/bin/node
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home tabagent \
 && mkdir -p /data /models \
 && chown tabagent:tabagent /data /models
WORKDIR /app
COPY --from=build --chown=root:root /app/package.json ./package.json
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
# Inside a container the server listens on all interfaces, so every request needs a key (docs/security.md):
# create one with `docker exec tabagent node dist/src/cli.js keys create --name NAME --scopes inference`.
ENV NODE_ENV=production \
    TABAGENT_HOST=0.0.0.0 \
    TABAGENT_PORT=3000 \
    TABAGENT_DATA_DIR=/data \
    TABAGENT_MODELS_DIR=/models \
    TABAGENT_AUTH__REQUIRED=true
VOLUME ["/data", "/models"]
EXPOSE 3000
USER tabagent
# Readiness, not liveness: storage open, workers up, preloaded models loaded (docs/observability.md).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.TABAGENT_PORT||3000)+'/v1/health/ready').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/src/cli.js"]
# http mode: native messaging has no browser to talk to in a container; WebRTC needs UDP ports mapped (docs/deploy.md).
CMD ["serve", "--mode", "http", "--no-stdio"]
