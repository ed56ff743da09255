FROM alpine-home
WORKDIR "${HOME}"
WORKDIR src
FROM alpine
WORKDIR /app
WORKDIR src
FROM --platform=windows/amd64 nanoserver AS windows-build
WORKDIR C:/app
FROM --platform=windows/amd64 nanoserver AS windows-test
WORKDIR /app
