FROM alpine
ENTRYPOINT my-app start
