# One image for every Cordon service, for hosts with a registry; the
# service to run is the command, e.g. `services/executor/dist/main.js`.
FROM node:20-bookworm-slim AS build
WORKDIR /cordon
COPY . .
RUN npm ci --no-audit --no-fund && npx tsc -b && npm prune --omit=dev

FROM node:20-bookworm-slim
# The executor's bubblewrap fallback and its image checks need these; the
# other services ignore them.
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap util-linux \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /cordon
COPY --from=build /cordon /cordon
ENV NODE_ENV=production
ENTRYPOINT ["node", "--import", "@cordon/service-kit/register"]
