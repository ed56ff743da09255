FROM alpine
ONBUILD RUN true
