FROM alpine
# syntax=docker/dockerfile:1
RUN true
