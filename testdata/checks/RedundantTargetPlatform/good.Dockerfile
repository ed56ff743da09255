FROM --platform=$BUILDPLATFORM alpine AS build
FROM alpine
