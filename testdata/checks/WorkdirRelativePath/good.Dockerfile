FROM alpine-home
WORKDIR "${HOME}"
WORKDIR src
FROM alpine
WORKDIR /app
WORKDIR src
