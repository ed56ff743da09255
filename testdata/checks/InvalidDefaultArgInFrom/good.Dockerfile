ARG TAG=latest
ARG IMAGE=alpine
FROM ${IMAGE}:${TAG}
