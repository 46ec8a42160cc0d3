# The polykernel service for a host without a container registry: the local Debian base
# (`npm run images` makes it) with the host's own Node 20 binary, and the service as built on the host
# (dist/, production node_modules), staged by scripts/build-service-images.mjs. Same layout, user and
# command as ../../Dockerfile, which builds it from node:20-bookworm-slim where a registry is reachable.
ARG BASE_IMAGE=polykernel/base:latest
FROM ${BASE_IMAGE}
USER root
COPY node /usr/local/bin/node
WORKDIR /app
ENV NODE_ENV=production KG_IP=0.0.0.0 POLYKERNEL_STATE_DIR=/var/lib/polykernel
COPY app/ /app/
RUN node -e "require('zeromq'); require('dockerode'); require('ioredis')"
EXPOSE 8888
CMD ["node", "dist/src/main.js"]
