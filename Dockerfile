# The polykernel service itself. Kernels are sibling containers started through the host's Docker engine
# (the socket is mounted), so the per-kernel socket directories must live at the same path inside this
# container and on the host: compose.yaml mounts /var/lib/polykernel at the same path on both sides.
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --no-audit --no-fund
COPY src ./src
COPY test ./test
COPY bench ./bench
COPY scripts/build-playground.mjs ./scripts/
# tsc, then the playground page's bundle (dist/playground): the runtime stage needs no browser libraries.
RUN npm run build --silent

FROM ${NODE_IMAGE}
WORKDIR /app
ENV NODE_ENV=production KG_IP=0.0.0.0 POLYKERNEL_STATE_DIR=/var/lib/polykernel
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY config ./config
COPY notebooks ./notebooks
EXPOSE 8888
CMD ["node", "dist/src/main.js"]
