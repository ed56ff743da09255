FROM alpine
ONBUILD RUN --bogus true
